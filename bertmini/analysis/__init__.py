"""Part IV, chapter 12: looking inside BERT. Attention maps of a text (capture), bertviz's views offline
(views), static matplotlib figures (figures), per-head statistics (head_stats), attention rollout
(rollout), syntax heads against UD trees (conllu, syntax) and what fine-tuning changes (divergence)."""
