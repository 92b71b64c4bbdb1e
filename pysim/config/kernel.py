"""The frozen configuration every kernel path is handed: the profile (kernel
behaviour), the preset (hardware features and costs) and the kernel costs as
attributes, resolved once when the machine is built."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

from ..errors import ConfigError
from .presets import FEATURES, KERNEL_KEYS, Preset, get_preset
from .profiles import PROFILE_FIELDS, Profile, get_profile

class KernelCosts:
    """The preset's kernel-path costs as read-only attributes (cfg.cost.per_pte, ...):
    slots, because kernel paths read them on every call."""

    __slots__ = KERNEL_KEYS

    def __init__(self, **costs: float):
        missing = [k for k in KERNEL_KEYS if k not in costs]
        extra = sorted(set(costs) - set(KERNEL_KEYS))
        if missing or extra:
            raise ConfigError(f"kernel costs need exactly {', '.join(KERNEL_KEYS)}; "
                              f"missing {missing}, unknown {extra}", field="kernel")
        for k in KERNEL_KEYS:
            object.__setattr__(self, k, float(costs[k]))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("KernelCosts is read-only: change the preset instead")

    def __reduce__(self):
        return (_costs, (self._asdict(),))

    def _asdict(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in KERNEL_KEYS}

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, KernelCosts) and self._asdict() == other._asdict()

    def __hash__(self) -> int:
        return hash(tuple(self._asdict().values()))

    def __repr__(self) -> str:
        return "KernelCosts(" + ", ".join(f"{k}={v:g}" for k, v in self._asdict().items()) + ")"


def _costs(d: Dict[str, float]) -> KernelCosts:
    return KernelCosts(**d)


@dataclass(frozen=True)
class KernelConfig:
    """What a kernel path may read: the profile, the preset, its kernel costs, and the
    preset's CPU features as attributes (cfg.pcid, cfg.invpcid, cfg.invlpgb)."""

    profile: Profile
    preset: Preset
    cost: KernelCosts

    @classmethod
    def build(cls, profile: Profile, preset: Preset) -> "KernelConfig":
        return cls(profile, preset, KernelCosts(**preset.kernel))

    @property
    def pcid(self) -> bool:
        return self.preset.features["pcid"]

    @property
    def invpcid(self) -> bool:
        return self.preset.features["invpcid"]

    @property
    def invlpgb(self) -> bool:
        return self.preset.features["invlpgb"]

    @property
    def rar(self) -> bool:
        return self.preset.features["rar"]



def split_machine_overrides(overrides: Dict[str, Any]) -> Tuple[Dict[str, Any],
                                                                Dict[str, Any]]:
    """Machine(..., **overrides) as (profile field overrides, preset feature overrides):
    pcid=False and invpcid=False are hardware, everything else a profile field."""
    prof, feat = {}, {}
    for key, value in overrides.items():
        if key in FEATURES:
            feat[key] = value
        elif key in PROFILE_FIELDS:
            prof[key] = value
        else:
            allowed = PROFILE_FIELDS + tuple(FEATURES)
            raise ConfigError(f"Machine option {key!r} unknown: not a profile field or a CPU "
                              f"feature; allowed: {', '.join(allowed)}", field=key,
                              allowed=allowed)
    return prof, feat


def resolve(profile: Any, preset: Any, **overrides: Any) -> KernelConfig:
    """The configuration of Machine(preset=..., profile=..., **overrides)."""
    prof_over, feat_over = split_machine_overrides(overrides)
    return KernelConfig.build(get_profile(profile, **prof_over),
                              get_preset(preset, **feat_over))
