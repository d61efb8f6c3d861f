"""Pipeline stages, the bottom layer: it imports nothing from commands/, flows/, serve/, monitor/
or scale/, and no module imports a stage's entry module (tests/test_layering.py checks both).

Stage entry modules, each a DVC stage run as ``python -m stages.<name>`` (dvc.yaml):

    ingest              read the user's texts and labels (CSV, JSONL, Parquet; path or URL)
    validate            Great Expectations checks on the raw data and (``--splits``) the splits
    split               stable train/val/test split: new data never moves old rows
    label_audit         the train and val labels that are probably wrong (confident learning)
    train               fine-tune the encoder; checkpoint, curves, resumable state
    oos                 the out-of-scope detector: scores fitted on train, threshold chosen on val
    evaluate            candidate, champion and baselines scored on the same test rows
    gate                may the candidate replace the champion? one row per check
    export              ONNX export, gated on parity with PyTorch
    quantize            int8 model, gated on accuracy and agreement
    benchmark           latency, throughput and size of PyTorch, fp32 and int8

Shared helpers (imported by the stages and the layers above):

    artifacts           the artifact contract: every path, the champion pointer, the data profile
    common              params loading, StageError, logging, the CLI wrapper
    stage_cli           a stage's command line: ``--help`` from dvc.yaml, unknown arguments refused
    analytics           usage analytics off by default (Prefect, DVC)
    io                  atomic writes, hashing
    tables              the one reader of user tables, with its per-format error messages
    input_checks        the columns, ids and class spellings of a user's texts and labels
    data                the splits, and the text normaliser every "same text" check uses
    dataset             the labelled dataset ingest builds: the source plus people's import batches
    expectations        the validation catalogue built from params (validate)
    validation_report   what a validation found (Report) and its self-contained HTML page
    classifier          the one model definition: encoder + pooling + head
    model               loading a classifier and scoring texts with it (train, evaluate, export)
    onnx_session        ONNX Runtime sessions and inference (export, quantize, predict, serve)
    scoring             scoring a table of texts with the ONNX model (predict, scale-out)
    prediction_log      the prediction log's schema and layout (the service writes, the monitor reads)
    oos_detector        out-of-scope scores (msp, energy, mahalanobis, knn) in numpy, saved beside a model
    oos_params          the oos params section (train and validate read which rows are out of scope)
    oos_metrics         evaluate's out-of-scope figures (eval.json oos): abstention, recall, AUROC
    metrics             classification metrics, computed one way everywhere
    stats               the gate's statistics: bootstrap CIs, McNemar
    drift_stats         Jensen-Shannon, Kolmogorov-Smirnov, pairwise distances (validate, monitor)
    report_format       how numbers and tables look in every markdown report
    markdown_safety     data values made inert in markdown posted publicly (the PR report)
    gate_report         gate.json rendered as reports/gate.md
    label_audit_report  the label audit's markdown and HTML pages
    plots               drawing shared by several reports' figures, and saving a PNG atomically
    vcs                 git and dvc as subprocesses (promote, the flows, the PR report)
"""
