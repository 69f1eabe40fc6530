"""Training: hierarchical transfer learning (An et al. 2021), the flat baseline, SVM stacking, the experiment.

    python -m training.experiment --preset smoke|cpu|paper      # the paper's comparison -> table, JSON, plot
    python -m training.train --preset cpu --out CHECKPOINT_DIR   # approach 3 -> checkpoint for the converters

Modules, in the order data flows through them:

    cohort       labelled eyes: phantom.cohort() specs or a CSV of the user's volumes
    maps_cache   thickness maps by the scan-time code, in parallel, cached on disk by content
    splits       patient-level, class-stratified test splits, reduced sets, validation parts, folds
    data         normative model of a fit's normal eyes, network input (sdk.maps.to_network_input)
    networks.fit one network's training (early stopping) and inference; parallel training processes
    hierarchy    the three approaches' stage networks on one set of eyes, and their stacking features
    stacking     out-of-fold features and the calibrated SVM
    pipeline     folds -> out-of-fold features -> final networks -> stackers, with the up-front checks
    metrics      kappa, accuracy, balanced ("weighted") accuracy, confusion, per-map stage accuracy
    presets      smoke, cpu, paper
    report       results.json, results.md, results.png
    experiment   the CLI of the comparison; train: the CLI writing a checkpoint (checkpoint: its format)
"""
