"""The zoo entry of the digit-sum reasoning policy trained with GRPO (``digitsum_grpo_mnist``).

``geozoo zoo train digitsum_grpo_mnist --seeds 0 1 2`` trains it from
``configs/digitsum_grpo_mnist.yaml`` (supervised warm-up, then GRPO) and publishes the median
seed by held-out pass@1; its card reports pass@1 and pass@8 (from 8 samples per held-out
prompt at temperature 1) and the greedy decode's accuracy.
"""

from __future__ import annotations

from torch import nn

from geozoo.rl.evaluation import digit_sum_metrics
from geozoo.rl.policies import DigitSumPolicy
from geozoo.zoo.pretrained import InputSpec, PretrainedCfg, Published
from geozoo.zoo.registry import register_model

__all__ = ["DIGIT_SUM_ENTRY", "digitsum_grpo_mnist"]


def _publish(network: nn.Module) -> Published:
    # the encoder's weights are in the checkpoint: no need to fetch cnn_mnist on every load, but
    # its architecture must be recorded, since the entry it came from may change
    backbone = network.backbone
    arguments = {
        "pretrained_encoder": False,
        "encoder_global_pool": backbone.global_pool,
        "encoder_padding_mode": backbone.padding_mode,
    }
    return Published(network, arguments=arguments)


#: Two 28x28 digits side by side in [0, 1]; the outputs are the greedy decode's logits.
DIGIT_SUM_ENTRY = PretrainedCfg(
    input=InputSpec((1, 28, 56)),
    metrics=digit_sum_metrics,
    primary_metric="clean/pass@1",
    export=_publish,
    description="Digit-sum policy (zoo cnn_mnist encoder, 2 x 64 causal decoder) after "
    "supervised warm-up and GRPO with a reverse-KL (k3) penalty.",
    data_description="Prompts of two MNIST digits side by side whose answer is their sum "
    "(geozoo.rl.DigitSumDataModule, offline digits; held-out prompts use only the 1,000 "
    "held-out digits).",
    notes="A policy: `model.sample(images, n)` draws n answers per image (digit tokens, then "
    "end-of-sequence 10); `model(images)` returns the logits along the greedy decode. "
    "pass@k is the unbiased estimator of Chen et al. (2021) from 8 samples per prompt.",
)


@register_model(pretrained_cfg=DIGIT_SUM_ENTRY)
def digitsum_grpo_mnist(**kwargs) -> DigitSumPolicy:
    """Digit-sum policy (zoo ``cnn_mnist`` encoder, 2 x 64 causal decoder) after supervised
    warm-up and GRPO with a reverse-KL (k3) penalty."""
    return DigitSumPolicy(**{"num_digits": 2, **kwargs})
