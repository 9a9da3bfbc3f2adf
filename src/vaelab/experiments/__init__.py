"""Experiments: units of work and what is built from them.

    units             the one mechanism for resumable work (fingerprints, atomic records, skip / redo)
    training_run      train one model into a run directory; score data with it
    study, study_stages   the study behind `vaelab run`, as a graph of units
    detector_scores   every registered detector's scores for a benchmark cell
    anomaly, anomaly_tables       the anomaly benchmark (protocol x class x latent size x detector)
    synthetic, synthetic_tables   synthetic anomalies of known types
    semisupervised    the M2 stage and the semi-supervised anomaly curve
"""
