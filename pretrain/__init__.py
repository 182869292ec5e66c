"""userfm.pretrain: stage 1, Lightning pretraining of the behaviour encoder.

Objectives (next-item, DRO, contrastive), the LightningModule and DataModule, and the
`userfm pretrain` CLI arrive with the pretraining issue. Installed as ``userfm.pretrain``
(never as a top-level ``pretrain`` package).
"""
