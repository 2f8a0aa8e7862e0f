"""A transformer on the raw waveform: transformers' Wav2Vec2ForSequenceClassification with a small config.

The architecture of the self-supervised SER models people fine-tune (wav2vec 2.0, HuBERT, WavLM share it), sized
for CPU and trained from scratch, since no pretrained weights can be fetched offline. transformers is imported when
the model is built, so the rest of the zoo loads without it.
"""

from __future__ import annotations

import torch
from torch import nn

from staa.models.features import zero_mean_unit_var


class Wav2Vec2(nn.Module):
    """Strided convolutions (20 ms frames, 50 per second), a small transformer encoder, mean pooling, a linear head."""

    def __init__(
        self,
        n_classes: int,
        sample_rate: int = 16_000,
        channels: int = 64,
        hidden: int = 96,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
    ):
        super().__init__()
        from staa.models.huggingface import transformers_offline

        transformers = transformers_offline()
        self.config = {"channels": channels, "hidden": hidden, "layers": layers, "heads": heads, "dropout": dropout}
        self.hf_config = transformers.Wav2Vec2Config(
            conv_dim=(channels,) * 7,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=2 * hidden,
            num_conv_pos_embeddings=32,
            num_conv_pos_embedding_groups=4,
            hidden_dropout=dropout,
            attention_dropout=dropout,
            activation_dropout=dropout,
            feat_proj_dropout=dropout,
            final_dropout=dropout,
            layerdrop=0.0,
            apply_spec_augment=False,  # its time masks need clips longer than 10 frames; the generator trains on crops
            classifier_proj_size=hidden,
            num_labels=n_classes,
        )
        self.net = transformers.Wav2Vec2ForSequenceClassification(self.hf_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(input_values=zero_mean_unit_var(x)).logits
