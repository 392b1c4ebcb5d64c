"""Text conditioning for the text-conditional DiT (docs/text_conditional.md): frozen text encoders
(``encoders``), the on-disk caption bank of token embeddings (``bank``), caption ids -> embeddings
before the model's forward, with caption dropout and the empty-caption CFG null (``conditioning``),
and the CLIP score (``clip_score``).  Nothing here imports transformers until an encoder is loaded."""
