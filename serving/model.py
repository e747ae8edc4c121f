"""The champion fraud model, loaded once per process and swapped when the alias moves.

Loading goes through MLflow (``models.registry.load_champion``: ``models:/fraud@champion``
resolved to a version); scoring calls the LightGBM Booster on a NumPy row - through its C API's
single-row fast path when available, else ``Booster.predict`` - never pyfunc or the sklearn wrapper. ``maybe_refresh()`` is cheap enough for the request path: at most every
``check_seconds`` it starts a background thread that resolves the alias and, if it moved, loads
the new version and swaps it in; requests keep the old model meanwhile.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """No model can score now (no champion yet, or it could not be loaded)."""


class SingleRowPredictor:
    """The booster's own single-row fast path (LightGBM C API ``...SingleRowFast``): the
    prediction config is set up once, so a call costs a few microseconds instead of the ~50-70 us
    of ``Booster.predict``'s per-call checks and setup. Same trees, same numbers (tested)."""

    def __init__(self, booster, n_features: int):
        from lightgbm.basic import _C_API_DTYPE_FLOAT64, _C_API_PREDICT_NORMAL, _LIB, _safe_call

        self._lib, self._safe_call = _LIB, _safe_call
        self._booster = booster  # keeps the handle alive as long as this config
        self._config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                booster._handle,
                ctypes.c_int(_C_API_PREDICT_NORMAL),
                ctypes.c_int(0),  # start iteration
                ctypes.c_int(-1),  # all iterations
                ctypes.c_int(_C_API_DTYPE_FLOAT64),
                ctypes.c_int32(n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._out_len = ctypes.c_int64()
        self._out = np.zeros(1, dtype=np.float64)
        self._out_pointer = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._lock = threading.Lock()  # the config holds per-call buffers: one caller at a time

    def __call__(self, row: np.ndarray) -> float:
        with self._lock:
            self._safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._out_len),
                    self._out_pointer,
                )
            )
            return float(self._out[0])

    def __del__(self):
        config, self._config = getattr(self, "_config", None), None
        if config:
            self._lib.LGBM_FastConfigFree(config)


@dataclass(frozen=True)
class LoadedModel:
    booster: Any
    name: str
    version: str
    columns: tuple[str, ...]  # the booster's feature order
    threshold: float  # decline at or above it: derived when this version was trained
    fast: SingleRowPredictor | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls, booster, name: str, version: str, columns: tuple[str, ...], threshold: float
    ) -> LoadedModel:
        try:
            fast = SingleRowPredictor(booster, len(columns))
        except Exception as exc:  # an older/newer lightgbm without the C entry points
            log.warning("single-row fast path unavailable, using Booster.predict: %s", exc)
            fast = None
        return cls(booster, name, version, columns, threshold, fast)

    def row(self, features: dict) -> np.ndarray:
        return np.array(
            [[math.nan if (v := features[c]) is None else v for c in self.columns]],
            dtype=np.float64,
        )

    def predict(self, features: dict) -> float:
        row = self.row(features)
        if self.fast is not None:
            return self.fast(row)
        return float(self.booster.predict(row, num_threads=1)[0])


def check_features(booster, served: list[str]) -> tuple[str, ...]:
    names = tuple(booster.feature_name())
    unknown = [n for n in names if n not in served]
    if unknown:
        raise ModelUnavailable(f"the model needs features the feature service lacks: {unknown}")
    return names


class ChampionModel:
    """Holds the current champion; thread-safe swaps, cheap checks."""

    def __init__(self, cfg, task: str, served_features: list[str], check_seconds: float = 30.0):
        self.cfg = cfg
        self.task = task
        self.served_features = served_features
        self.check_seconds = check_seconds
        self.current: LoadedModel | None = None
        self.error: str | None = "model not loaded yet"
        self.on_change = None  # callback(old, new), e.g. metrics
        self._next_check = 0.0
        self._lock = threading.Lock()
        self._client = None
        self._client_pid = None

    # -- loading ----------------------------------------------------------------------------------
    def _registry(self):
        # A fresh client per process: SQLAlchemy connections must not cross a fork (preload).
        if self._client is None or self._client_pid != os.getpid():
            from models import registry

            _, self._client = registry.connect(self.cfg)
            self._client_pid = os.getpid()
        return self._client

    def champion_version(self) -> str | None:
        from models import registry
        from models.config import model_config

        name = model_config(self.cfg, self.task)["registered_model"]
        return registry.champion_version(self._registry(), name)

    def refresh(self) -> bool:
        """Loads the champion if it is not the current model. Returns whether it changed."""
        from models.registry import NoChampion, load_champion

        with self._lock:
            if self.current is not None and self.champion_version() == self.current.version:
                return False
            try:
                booster, name, version, threshold = load_champion(self.cfg, self.task)
                columns = check_features(booster, self.served_features)
            except (NoChampion, ModelUnavailable, ValueError) as exc:
                if self.current is None:
                    self.error = str(exc)
                log.warning("champion not loaded: %s", exc)
                return False
            loaded = LoadedModel.of(booster, name, version, columns, threshold)
            old, self.current = self.current, loaded
            self.error = None
        log.info("serving %s version %s", name, version)
        if self.on_change:
            self.on_change(old, self.current)
        return True

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception as exc:  # a registry hiccup must not kill the worker; retry later
            log.warning("champion check failed: %s", exc)
            if self.current is None:
                self.error = f"champion check failed: {exc}"

    def maybe_refresh(self) -> None:
        """At most every check_seconds, checks the alias in a background thread."""
        now = time.monotonic()
        if now < self._next_check or self.check_seconds <= 0:
            return
        self._next_check = now + self.check_seconds
        if self._lock.locked():
            return
        threading.Thread(target=self._refresh_quietly, name="champion-check", daemon=True).start()

    def get(self) -> LoadedModel:
        model = self.current
        if model is None:
            raise ModelUnavailable(self.error or "model not loaded")
        return model
