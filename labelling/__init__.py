"""Labelling: people close the loop. Choose which logged texts to label (select), send them to
Label Studio and bring the labels back (studio), and import labels as a new, append-only batch of
the dataset that ingest reads (imports). Above stages/, beside monitor/: it imports stages' helpers,
never a stage's entry module. More: docs/labelling.md.
"""
