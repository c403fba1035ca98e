"""Energy (kWh) and carbon (kg CO2-eq) of a stretch of computation, with where each figure comes from.

See the method page (book/method.md), "What retraining costs": energy comes from the best
source the machine has and is labelled with it. Three components are read:

========  ==========================================  ==============================
part      read by                                     ``source``
========  ==========================================  ==============================
``gpu``   the GPU's own energy counter, through NVML  ``"nvml"`` (a measurement)
``cpu``   codecarbon's ``OfflineEmissionsTracker``    ``"rapl"`` or ``"powermetrics"``
                                                      when codecarbon read a hardware
                                                      counter, else ``"estimate"``
``ram``   codecarbon                                  always ``"estimate"`` (a model
                                                      of DIMM power, not a counter)
========  ==========================================  ==============================

Without RAPL (most VMs and containers), codecarbon falls back on the CPU's TDP
(thermal design power) scaled by the CPU load, and that figure is labelled
``"estimate"``; a hardware it does not know is labelled ``"estimate"`` too, so
an estimate is never passed off as a measurement. codecarbon's own GPU figure
is not used: the GPU is read here directly, at the epoch boundaries.

Carbon is energy times the grid carbon intensity codecarbon holds for the
country (its offline table of national electricity mixes); it is the same for
every component, so a GPU figure measured through NVML gets exactly the
intensity codecarbon would have applied.

codecarbon and NVML are optional: nothing here imports them until a meter is
started, and a meter that cannot start records why instead of raising, so a
training run never dies for want of an energy counter.
"""

from __future__ import annotations

import atexit
import logging
import warnings
from dataclasses import dataclass, field
from typing import Protocol

from ..checks import did_you_mean
from ..errors import InvalidParameterError

__all__ = [
    "DEFAULT_COUNTRY",
    "ESTIMATE",
    "MEASURED_SOURCES",
    "EnergyFigure",
    "EnergyReport",
    "EnergyCounter",
    "NvmlEnergyReader",
    "HostEnergyMeter",
    "EnergyMeter",
    "carbon_intensity",
]

DEFAULT_COUNTRY = "USA"
"""ISO 3166-1 alpha-3 code used for carbon when none is given."""

ESTIMATE = "estimate"
MEASURED_SOURCES = ("nvml", "rapl", "powermetrics")

MILLIJOULES_PER_KWH = 3.6e9

# codecarbon CPU modes that read a hardware energy counter; Intel Power Gadget
# and the Windows Energy Meter Interface both expose the RAPL registers.
_RAPL_CPU_MODES = ("intel_rapl", "intel_power_gadget", "windows_emi")


@dataclass
class EnergyFigure:
    """Energy of one hardware part over one interval.

    Attributes
    ----------
    kwh : float
        Energy in kWh.
    source : str
        ``"nvml"``, ``"rapl"``, ``"powermetrics"`` (hardware counters) or
        ``"estimate"`` (a model of power, e.g. TDP times load).
    """

    kwh: float
    source: str

    @property
    def measured(self) -> bool:
        return self.source in MEASURED_SOURCES

    def to_dict(self) -> dict:
        return {"kwh": float(self.kwh), "source": self.source}


@dataclass
class EnergyReport:
    """Energy and carbon of one interval, part by part.

    Attributes
    ----------
    parts : dict of str to EnergyFigure
        ``"gpu"``, ``"cpu"``, ``"ram"``: only the parts that could be read.
    unavailable : dict of str to str
        Part name to the reason it could not be read (e.g. no GPU, codecarbon
        missing). In a sum of intervals (``a + b``) a part can be in both
        `parts` and `unavailable`: it was read in some intervals only, and its
        kWh covers those.
    carbon_intensity : float or None
        kg CO2-eq per kWh applied to every part; None when codecarbon, which
        holds the grid data, is unavailable.
    """

    parts: dict[str, EnergyFigure] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    carbon_intensity: float | None = None

    @property
    def kwh(self) -> float | None:
        """Sum over the parts that were read, in kWh; None when none was."""
        if not self.parts:
            return None
        return sum(figure.kwh for figure in self.parts.values())

    @property
    def estimated_kwh(self) -> float | None:
        """The part of :attr:`kwh` that is an estimate rather than a measurement, in kWh."""
        if not self.parts:
            return None
        return sum(figure.kwh for figure in self.parts.values() if not figure.measured)

    @property
    def carbon_kg(self) -> float | None:
        """:attr:`kwh` times :attr:`carbon_intensity`, in kg CO2-eq (always an estimate)."""
        if self.kwh is None or self.carbon_intensity is None:
            return None
        return self.kwh * self.carbon_intensity

    def __add__(self, other: "EnergyReport") -> "EnergyReport":
        """Energy of two consecutive intervals (e.g. epochs): part-wise sums."""
        parts = {name: EnergyFigure(figure.kwh, figure.source) for name, figure in self.parts.items()}
        for name, figure in other.parts.items():
            if name in parts:
                # A part's source cannot improve mid-run; if it ever differs, keep the weaker label.
                source = parts[name].source if parts[name].source == figure.source else ESTIMATE
                parts[name] = EnergyFigure(parts[name].kwh + figure.kwh, source)
            else:
                parts[name] = EnergyFigure(figure.kwh, figure.source)
        # A part missing from either interval stays listed, so a partial sum is never taken for a whole one.
        unavailable = {**other.unavailable, **self.unavailable}
        intensity = self.carbon_intensity if self.carbon_intensity is not None else other.carbon_intensity
        return EnergyReport(parts, unavailable, intensity)


class EnergyCounter(Protocol):
    """A cumulative energy counter: what :class:`EnergyMeter` needs of a GPU reader.

    ``read_kwh()`` returns the energy since some fixed origin, in kWh; only
    differences between two reads are used. ``source`` labels the figures.
    """

    source: str

    def read_kwh(self) -> float: ...


class NvmlEnergyReader:
    """The GPU's own cumulative energy counter, read through NVML.

    Wraps ``nvmlDeviceGetTotalEnergyConsumption`` (millijoules since the
    driver was loaded; Volta and newer GPUs). The counter is read once when
    the reader is built, so a GPU without it fails here rather than in the
    middle of training.

    Parameters
    ----------
    device_index : int, default 0
        NVML index of the GPU. With ``CUDA_VISIBLE_DEVICES`` set, NVML and CUDA
        number devices differently; :meth:`for_torch_device` maps by UUID.
    uuid : str, optional
        NVML UUID (``"GPU-..."``); takes precedence over `device_index`.
    nvml : module-like, optional
        The NVML bindings: an object with ``nvmlInit``,
        ``nvmlDeviceGetHandleByIndex``, ``nvmlDeviceGetHandleByUUID``,
        ``nvmlDeviceGetTotalEnergyConsumption`` and ``nvmlShutdown``. Defaults
        to ``pynvml`` from the ``nvidia-ml-py`` package; tests pass a stand-in.

    Examples
    --------
    >>> reader = NvmlEnergyReader(0)            # doctest: +SKIP
    >>> before = reader.read_kwh()              # doctest: +SKIP
    """

    source = "nvml"

    def __init__(self, device_index: int = 0, *, uuid: str | None = None, nvml=None):
        if nvml is None:
            import pynvml as nvml  # from nvidia-ml-py
        self._nvml = nvml
        nvml.nvmlInit()
        self._open = True
        try:
            if uuid is not None:
                self._handle = nvml.nvmlDeviceGetHandleByUUID(uuid)
            else:
                self._handle = nvml.nvmlDeviceGetHandleByIndex(device_index)
            self.read_kwh()
        except Exception:
            self.close()
            raise

    @classmethod
    def for_torch_device(cls, device, *, nvml=None) -> "NvmlEnergyReader":
        """The reader of the GPU that holds a CUDA `device` (matched by UUID where torch exposes it)."""
        import torch

        device = torch.device(device)
        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is not None:
            text = str(uuid)
            try:
                return cls(uuid=text if text.startswith(("GPU-", "MIG-")) else "GPU-" + text, nvml=nvml)
            except Exception:  # UUID formats vary across torch and driver versions; the index usually agrees
                pass
        return cls(index, nvml=nvml)

    def read_kwh(self) -> float:
        """Energy used by the GPU since the driver was loaded, in kWh."""
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) / MILLIJOULES_PER_KWH

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a half-initialised library is best effort
                pass


_WARNED: set[str] = set()


def _warn_no_codecarbon(reason: str) -> None:
    """Say once per process that CPU and RAM energy will be missing, and how to get it."""
    if reason in _WARNED:
        return
    _WARNED.add(reason)
    warnings.warn(f"Energy tracking is on but {reason}: the records will hold no CPU/RAM energy or carbon. "
                  "Install the energy extra: pip install 'resque[energy]'.", RuntimeWarning, stacklevel=4)


def _quiet_codecarbon():
    """Import codecarbon with its logger at ERROR.

    Importing codecarbon sets its logger to INFO (``codecarbon.external.logger``
    calls ``set_logger_level()`` at import), and a tracker logs a few lines
    before applying its own ``log_level``; so the level is set here, after
    the import and before any tracker is built.
    """
    import codecarbon

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    return codecarbon


def carbon_intensity(country_iso_code: str = DEFAULT_COUNTRY) -> float:
    """Grid carbon intensity codecarbon applies offline in a country, in kg CO2-eq per kWh.

    Parameters
    ----------
    country_iso_code : str, default "USA"
        ISO 3166-1 alpha-3 code (``"FRA"``, ``"DEU"``, ...), one of codecarbon's
        global energy-mix table.

    Raises
    ------
    InvalidParameterError
        If codecarbon has no data for the code.
    ModuleNotFoundError
        If codecarbon is not installed.
    """
    _quiet_codecarbon()
    from codecarbon.core.emissions import Emissions
    from codecarbon.core.units import Energy
    from codecarbon.external.geography import GeoMetadata
    from codecarbon.input import DataSource

    code = _check_country(country_iso_code)
    # The same call codecarbon makes for on-premise energy, applied to 1 kWh.
    engine = Emissions(DataSource())
    return float(engine.get_private_infra_emissions(Energy.from_energy(kWh=1.0), GeoMetadata(country_iso_code=code)))


def _check_country(country_iso_code) -> str:
    from codecarbon.input import DataSource

    known = sorted(DataSource().get_global_energy_mix_data())
    code = country_iso_code.upper() if isinstance(country_iso_code, str) else country_iso_code
    if code not in known:
        hint = did_you_mean(code, known)
        hint = hint + " " if hint else ""
        raise InvalidParameterError(
            "country_iso_code",
            country_iso_code,
            "an ISO 3166-1 alpha-3 code in codecarbon's energy-mix table",
            hint=hint + f"Known codes include {', '.join(known[:8])}, ...",
        )
    return code


def _cpu_source(hardware) -> str:
    """Source label of codecarbon's CPU figure, from the hardware objects it chose."""
    from codecarbon.external.hardware import CPU, AppleSiliconChip

    if isinstance(hardware, CPU) and getattr(hardware, "_mode", None) in _RAPL_CPU_MODES:
        return "rapl"
    if isinstance(hardware, AppleSiliconChip) and getattr(hardware, "chip_part", "") == "CPU":
        return "powermetrics"
    # "constant" and "cpu_load" modes are TDP-based; anything unknown is not claimed as measured.
    return ESTIMATE


class HostEnergyMeter:
    """CPU and RAM energy per interval, from codecarbon's ``OfflineEmissionsTracker``.

    Each interval is a codecarbon *task* (``start_task``/``stop_task``): it
    measures once at the end of the interval and samples CPU load every
    second in between, so nothing runs every `measure_power_secs` and no file
    is written (no ``emissions.csv``). Every failure is caught and recorded in
    :attr:`unavailable_reason`.

    The codecarbon tracker (and its hardware probe, about 0.4 s) is built once
    per process and country and shared by every meter: between intervals it
    runs nothing, so a study's hundreds of short runs do not pay for it again.
    It is stopped when the process exits, or when a measurement fails (the
    next meter then builds a fresh one).

    Parameters
    ----------
    country_iso_code : str, default "USA"
        Where the machine is, for carbon (see :func:`carbon_intensity`).
    """

    parts = ("cpu", "ram")

    def __init__(self, country_iso_code: str = DEFAULT_COUNTRY):
        self.country_iso_code = country_iso_code
        self.unavailable_reason: str = "not started"
        self.sources: dict[str, str] = {}
        self.carbon_intensity: float | None = None
        self.codecarbon_version: str = ""
        self._tracker = None
        self._key = None
        self._shared: _SharedTracker | None = None
        self._in_interval = False

    def start(self) -> None:
        """Take the process's shared tracker, building it and probing the hardware the first time (about 0.4 s).

        Raises
        ------
        InvalidParameterError
            If codecarbon is installed but does not know `country_iso_code`:
            that is a caller's mistake, not a missing counter.
        """
        try:
            codecarbon = _quiet_codecarbon()
        except Exception as error:  # ImportError, or a broken install
            self.unavailable_reason = f"codecarbon cannot be imported ({type(error).__name__}: {error})"
            _warn_no_codecarbon(self.unavailable_reason)
            return
        self.codecarbon_version = getattr(codecarbon, "__version__", "")
        self.country_iso_code = _check_country(self.country_iso_code)
        key = (codecarbon.OfflineEmissionsTracker, self.country_iso_code)
        shared = _SHARED_TRACKERS.get(key)
        if shared is None or shared.holder is not None:  # none yet, or another meter is measuring with it
            try:
                shared = _build_shared_tracker(codecarbon, self.country_iso_code)
            except Exception as error:
                self.unavailable_reason = f"codecarbon failed to start ({type(error).__name__}: {error})"
                self._tracker = None
                return
            if key in _SHARED_TRACKERS:  # a meter inside another's run: this tracker is its own
                shared.private = True
            else:
                _SHARED_TRACKERS[key] = shared
        shared.holder = self
        self._key, self._shared = key, shared
        self._tracker, self.sources, self.carbon_intensity = shared.tracker, dict(shared.sources), shared.carbon_intensity
        self.unavailable_reason = ""

    @property
    def available(self) -> bool:
        return self._tracker is not None

    def begin(self) -> None:
        """Start an interval."""
        if self._tracker is None:
            return
        try:
            self._tracker.start_task()
            self._in_interval = True
        except Exception as error:
            self._fail(error)

    def end(self) -> EnergyReport:
        """End the interval begun by :meth:`begin` and return its CPU and RAM energy."""
        report = EnergyReport(carbon_intensity=self.carbon_intensity)
        if self._tracker is None or not self._in_interval:
            reason = self.unavailable_reason or "no interval was begun"
            report.unavailable = {part: reason for part in self.parts}
            return report
        self._in_interval = False
        try:
            data = self._tracker.stop_task()
            if data is None:
                raise RuntimeError("codecarbon's stop_task returned no data")
            report.parts = {
                "cpu": EnergyFigure(float(data.cpu_energy), self.sources["cpu"]),
                "ram": EnergyFigure(float(data.ram_energy), self.sources["ram"]),
            }
        except Exception as error:
            self._fail(error)
            report.unavailable = {part: self.unavailable_reason for part in self.parts}
        return report

    def stop(self) -> None:
        """End this meter (an open interval is dropped); the shared tracker stays for the next meter."""
        tracker, self._tracker = self._tracker, None
        if tracker is None:
            return
        shared, self._shared = self._shared, None
        shared.holder = None
        if self._in_interval:
            try:
                tracker.stop_task()
            except Exception:  # stopping is best effort: the figures are already taken
                shared.failed = True
        self._in_interval = False
        if shared.private or shared.failed:
            _retire(shared, self._key)
        self.unavailable_reason = "stopped"

    def _fail(self, error: Exception) -> None:
        self._in_interval = False
        if self._shared is not None:
            self._shared.failed = True  # a tracker that failed once is not handed to the next meter
        self.stop()
        self.unavailable_reason = f"codecarbon failed during measurement ({type(error).__name__}: {error})"


@dataclass
class _SharedTracker:
    tracker: object
    sources: dict
    carbon_intensity: float
    holder: object = None  # the meter measuring with it now
    private: bool = False  # built for a meter that found the shared one busy: stopped with that meter
    failed: bool = False


#: One codecarbon tracker per (tracker class, country), built on first use and shared by every meter.
_SHARED_TRACKERS: dict[tuple, _SharedTracker] = {}


def _build_shared_tracker(codecarbon, country_iso_code: str) -> _SharedTracker:
    intensity = carbon_intensity(country_iso_code)
    tracker = codecarbon.OfflineEmissionsTracker(
        country_iso_code=country_iso_code,
        output_methods=[],  # no emissions.csv; `save_to_file` is deprecated in codecarbon 3
        log_level="error",
        allow_multiple_runs=True,  # no lock file, so parallel runs (and tests) do not block each other
        electricitymaps_api_token=None,  # offline: never ask an API for the grid mix
    )
    # A first task triggers codecarbon's hardware probe, so that cost falls here, before any
    # epoch's clock starts, and once per process.
    tracker.start_task("resque-probe")
    probe = tracker.stop_task()
    if probe is None:
        raise RuntimeError("codecarbon returned no measurement for a probe task")
    hardware = list(getattr(tracker, "_hardware", []))
    cpus = [item for item in hardware if type(item).__name__ in ("CPU", "AppleSiliconChip")]
    if not _SHARED_TRACKERS:
        atexit.register(_stop_shared_trackers)
    return _SharedTracker(tracker, {"cpu": _cpu_source(cpus[0]) if cpus else ESTIMATE, "ram": ESTIMATE}, intensity)


def _retire(shared: _SharedTracker, key) -> None:
    if _SHARED_TRACKERS.get(key) is shared:
        del _SHARED_TRACKERS[key]
    try:
        shared.tracker.stop()
    except Exception:  # best effort: it is not used again
        pass


def _stop_shared_trackers() -> None:
    """Stop every shared tracker's threads (at exit)."""
    for key, shared in list(_SHARED_TRACKERS.items()):
        _retire(shared, key)


class EnergyMeter:
    """GPU (NVML), CPU and RAM (codecarbon) energy, interval by interval.

    Parameters
    ----------
    country_iso_code : str, default "USA"
        Where the machine is, for carbon.
    gpu_counter : EnergyCounter, optional
        A cumulative GPU energy counter, usually :class:`NvmlEnergyReader`;
        None when there is no GPU to read.
    gpu_unavailable_reason : str, default "no CUDA device"
        Recorded for the ``gpu`` part when `gpu_counter` is None.
    host : bool, default True
        Read the CPU and RAM through codecarbon.
    """

    def __init__(
        self,
        country_iso_code: str = DEFAULT_COUNTRY,
        gpu_counter: EnergyCounter | None = None,
        *,
        gpu_unavailable_reason: str = "no CUDA device",
        host: bool = True,
    ):
        self.host = HostEnergyMeter(country_iso_code) if host else None
        self.gpu_counter = gpu_counter
        self.gpu_unavailable_reason = gpu_unavailable_reason
        self._gpu_start: float | None = None

    def start(self) -> None:
        if self.host is not None:
            self.host.start()

    @property
    def carbon_intensity(self) -> float | None:
        return self.host.carbon_intensity if self.host is not None else None

    def begin(self) -> None:
        if self.host is not None:
            self.host.begin()
        self._gpu_start = self._read_gpu()

    def end(self) -> EnergyReport:
        gpu_end = self._read_gpu()
        report = self.host.end() if self.host is not None else EnergyReport()
        if self.host is None:
            report.unavailable.update({"cpu": "host energy off", "ram": "host energy off"})
        if self._gpu_start is not None and gpu_end is not None:
            report.parts["gpu"] = EnergyFigure(gpu_end - self._gpu_start, self.gpu_counter.source)
        else:
            report.unavailable["gpu"] = self.gpu_unavailable_reason
        self._gpu_start = None
        return report

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()
        close = getattr(self.gpu_counter, "close", None)
        if close is not None:
            close()

    def _read_gpu(self) -> float | None:
        if self.gpu_counter is None:
            return None
        try:
            return float(self.gpu_counter.read_kwh())
        except Exception as error:  # a counter that stops answering must not stop training
            self.gpu_unavailable_reason = f"GPU energy counter failed ({type(error).__name__}: {error})"
            self.gpu_counter = None
            return None
