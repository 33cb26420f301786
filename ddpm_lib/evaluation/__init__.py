"""How good are the samples: FID, KID and Inception Score.

Read in this order: ``metrics`` (the formulas on feature matrices), ``features`` (Inception-v3 features and
its weights), ``classifier`` (the course's small feature classifier, offline), ``evaluate`` (sample a
checkpoint and score it against the test split; ``python -m ddpm_lib evaluate``).
"""
