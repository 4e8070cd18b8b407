"""What contrastive replay methods (`scr`, `pcr`, `co2l`) share: the views they contrast, drawn per
sample on the batch's device, the supervised contrastive loss (SupCon, Khosla et al., NeurIPS
2020), its proxy-based form (PCR, Lin et al., CVPR 2023), and Co2L's asymmetric form and
relation distillation (Cha et al., ICCV 2021).

`ContrastiveViews` is the augmentation of the SimCLR family as SCR's reference code applies it
(Kornia on a whole batch): a random resized crop (area 0.2 to 1 of the image, aspect ratio 3/4 to
4/3, sampled from the image by bilinear interpolation at the image's size: a crop's box need
not fall on whole pixels), a horizontal flip with probability 0.5, a colour
jitter with probability 0.8 (brightness, contrast and saturation factors in [0.6, 1.4], a hue
shift in [-0.1, 0.1] of the hue circle, applied in that order), and a conversion to greyscale
with probability 0.2. Saturation, hue and greyscale change colour images only (one channel is
left as it is, as torchvision leaves it).
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F

from sylvan.settings.data.augmentation import SeededAugmentation
from sylvan.transfer import to_device

GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, with torchvision's rgb_to_grayscale's rounding


def greyscale(x: torch.Tensor) -> torch.Tensor:
    """The luma of RGB images (N, 3, H, W), as (N, 1, H, W); one-channel images as they are."""
    if x.shape[1] != 3:
        return x
    weights = torch.tensor(GREY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """RGB images in [0, 1] (N, 3, H, W) as hue (a fraction of the circle), saturation, value."""
    r, g, b = x.unbind(1)
    value, _ = x.max(1)
    delta = value - x.min(1).values
    saturation = torch.where(value > 0, delta / value.clamp(min=1e-12), torch.zeros_like(value))
    spread = delta.clamp(min=1e-12)
    hue = torch.where(value == r, (g - b) / spread,
                      torch.where(value == g, 2.0 + (b - r) / spread, 4.0 + (r - g) / spread))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """The inverse of `rgb_to_hsv`: channel n of (5, 3, 1) for (R, G, B) is
    v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h) mod 6."""
    hue, saturation, value = x.unbind(1)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6.0 * hue) % 6.0
        channels.append(value - value * saturation * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(channels, 1)


class ContrastiveViews(SeededAugmentation):
    """A fresh random view of each image of a batch (N, C, H, W) in [0, 1] (the module's recipe)."""

    seed_offset = 15_485_863

    def __init__(
        self, seed: int = 0, crop_scale: float = 0.2, flip_probability: float = 0.5, jitter_probability: float = 0.8,
        jitter_strength: float = 0.4, hue_shift: float = 0.1, grey_probability: float = 0.2,
    ) -> None:
        if not 0.0 < crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be in (0, 1], got {crop_scale}")
        for name, value in (("flip_probability", flip_probability), ("jitter_probability", jitter_probability),
                            ("jitter_strength", jitter_strength), ("grey_probability", grey_probability)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 0.0 <= hue_shift <= 0.5:
            raise ValueError(f"hue_shift must be in [0, 0.5], got {hue_shift}")
        super().__init__(seed)
        self.crop_scale = crop_scale
        self.flip_probability = flip_probability
        self.jitter_probability = jitter_probability
        self.jitter_strength = jitter_strength
        self.hue_shift = hue_shift
        self.grey_probability = grey_probability

    def draw(self, count: int) -> dict[str, torch.Tensor]:
        """Per sample (CPU tensors): the crop's width and height as fractions of the image's, its
        centre (fractions), the flip, the four jitter parameters (1, 1, 1, 0 where the sample is
        not jittered) and the greyscale conversion."""
        generator = self._generator()

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)

        area = uniform(self.crop_scale, 1.0)
        ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3)))
        width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
        centre_x = width / 2 + (1 - width) * uniform(0.0, 1.0)
        centre_y = height / 2 + (1 - height) * uniform(0.0, 1.0)
        flip = uniform(0.0, 1.0) < self.flip_probability
        jittered = uniform(0.0, 1.0) < self.jitter_probability
        strength = self.jitter_strength
        factors = [torch.where(jittered, uniform(1 - strength, 1 + strength), 1.0) for _ in range(3)]
        hue = torch.where(jittered, uniform(-self.hue_shift, self.hue_shift), 0.0)
        grey = uniform(0.0, 1.0) < self.grey_probability
        return dict(width=width, height=height, centre_x=centre_x, centre_y=centre_y, flip=flip,
                    brightness=factors[0], contrast=factors[1], saturation=factors[2], hue=hue, grey=grey)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"contrastive views are of image batches (N, C, H, W); got shape {tuple(x.shape)}")
        if len(x) == 0:
            return x
        drawn = {name: to_device(value, x.device) for name, value in self.draw(len(x)).items()}
        view = self.resized_crops(x, drawn)
        return self.jittered(view, drawn)

    @staticmethod
    def resized_crops(x: torch.Tensor, drawn: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each sample's crop, mirrored where drawn, resized to the image's size (bilinear)."""
        dtype = x.dtype if x.is_floating_point() else torch.float32
        theta = torch.zeros(len(x), 2, 3, dtype=dtype, device=x.device)
        theta[:, 0, 0] = torch.where(drawn["flip"], -drawn["width"], drawn["width"]).to(dtype)
        theta[:, 0, 2] = (2 * drawn["centre_x"] - 1).to(dtype)
        theta[:, 1, 1] = drawn["height"].to(dtype)
        theta[:, 1, 2] = (2 * drawn["centre_y"] - 1).to(dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def jittered(x: torch.Tensor, drawn: dict[str, torch.Tensor]) -> torch.Tensor:
        """Brightness, contrast, saturation and hue, then greyscale, each as torchvision's
        functional form does it, clamped to [0, 1] after each."""
        def per_sample(name: str) -> torch.Tensor:
            return drawn[name].to(x.dtype).view(-1, 1, 1, 1)

        x = (x * per_sample("brightness")).clamp(0, 1)
        mean = greyscale(x).mean((1, 2, 3), keepdim=True)
        x = (mean + per_sample("contrast") * (x - mean)).clamp(0, 1)
        if x.shape[1] != 3:
            return x
        grey = greyscale(x)
        x = (grey + per_sample("saturation") * (x - grey)).clamp(0, 1)
        hsv = rgb_to_hsv(x)
        hsv = torch.stack([(hsv[:, 0] + per_sample("hue")[:, 0]) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
        x = hsv_to_rgb(hsv).clamp(0, 1)
        return torch.where(drawn["grey"].view(-1, 1, 1, 1), greyscale(x).expand_as(x), x)


def in_float32(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """A block where autocast is off on `tensor`'s device: under mixed precision a loss of
    similarities and masks is computed in float32 (where the masks' float32 minimum fits)."""
    return torch.autocast(tensor.device.type, enabled=False)


def supervised_contrastive_terms(
    features: torch.Tensor, labels: torch.Tensor, temperature: float, base_temperature: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's SupCon term as an anchor, for L2-normalized `features` (N, D) with `labels`:
    for anchor i, -(T / T_b) times the mean over its positives p (the other samples of its class,
    its other views included) of log(exp(z_i . z_p / T) / sum_{k != i} exp(z_i . z_k / T)); 0
    for an anchor without a positive. Returned with the mask of the anchors that have one. T_b
    defaults to T. Computed in float32."""
    base_temperature = temperature if base_temperature is None else base_temperature
    with in_float32(features):
        features = features.float()
        count = len(labels)
        itself = torch.eye(count, dtype=torch.bool, device=features.device)
        logits = (features @ features.T / temperature).masked_fill(itself, torch.finfo(torch.float32).min)
        log_probability = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (labels[:, None] == labels[None, :]) & ~itself
        per_anchor = log_probability.masked_fill(~positives, 0.0).sum(1) / positives.sum(1).clamp(min=1)
        return -(temperature / base_temperature) * per_anchor, positives.any(1)


def supervised_contrastive_loss(
    features: torch.Tensor, labels: torch.Tensor, temperature: float, base_temperature: float | None = None
) -> torch.Tensor:
    """SupCon (`supervised_contrastive_terms`) averaged over the anchors that have a positive."""
    terms, has_positive = supervised_contrastive_terms(features, labels, temperature, base_temperature)
    return (terms * has_positive).sum() / has_positive.sum().clamp(min=1)


def asymmetric_supervised_contrastive_loss(
    features: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, temperature: float, base_temperature: float
) -> torch.Tensor:
    """Co2L's asymmetric SupCon (Cha et al., ICCV 2021): the SupCon terms of the `anchors` alone (a
    boolean mask over the samples), every sample still a positive or a negative of them, summed
    and divided by the number of samples, anchors or not, as the authors' code averages them."""
    terms, has_positive = supervised_contrastive_terms(features, labels, temperature, base_temperature)
    return (terms * (has_positive & anchors)).sum() / len(labels)


def relation_distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, student_temperature: float, teacher_temperature: float
) -> torch.Tensor:
    """Co2L's instance-wise relation distillation (IRD): for each sample i, the distribution over
    the other samples j of softmax_j(z_i . z_j / kappa), the `teacher`'s features at
    `teacher_temperature` the target of the `student`'s at `student_temperature` (both (N, D),
    L2-normalized): the cross-entropy -sum_j p_teacher(i, j) log p_student(i, j), mean over i.
    No gradient reaches the teacher. Computed in float32."""
    with in_float32(student):
        count = len(student)
        others = ~torch.eye(count, dtype=torch.bool, device=student.device)

        def similarities(features: torch.Tensor, temperature: float) -> torch.Tensor:
            features = features.float()
            return (features @ features.T / temperature)[others].view(count, count - 1)

        target = F.softmax(similarities(teacher.detach(), teacher_temperature), dim=1)
        return -(target * F.log_softmax(similarities(student, student_temperature), dim=1)).sum(1).mean()


def proxy_contrastive_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PCR's proxy-based contrastive loss (Lin et al., CVPR 2023) from `logits`, each sample's
    cosine with every class's proxy over the temperature (N, C). Each sample is contrasted with
    the proxies of the batch's samples, its own class's the positives, so a class's proxy counts
    as often as the class has samples in the batch and a class absent from it does not count:
    the mean over samples of -l_y + log sum_c n_c exp(l_c), n_c the batch's samples of class c.
    Computed in float32."""
    with in_float32(logits):
        logits = logits.float()
        counts = torch.bincount(labels, minlength=logits.shape[1]).to(logits.dtype)
        weighted = (logits + counts.clamp(min=1).log()).masked_fill(counts == 0, float("-inf"))
        own = logits.gather(1, labels[:, None]).squeeze(1)
        return (torch.logsumexp(weighted, dim=1) - own).mean()
