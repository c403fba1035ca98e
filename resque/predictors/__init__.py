"""Every predictor of retraining cost other than RESQUE, and the registry of all of them.

- :mod:`.shift`: distribution-shift baselines (accuracy drop, MMD, Fréchet distance, CKA);
- :mod:`.transfer`: task-transferability scores (LogME, LEEP, NCE, H-score, GBC, k-NN, linear probe).
"""
