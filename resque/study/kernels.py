"""One Jupyter kernel for a whole local study, wiped clean between notebooks.

A retraining in the quick study takes a few seconds; starting a kernel and
importing PyTorch, the study package, PyTorch's compiler module (imported by
the first optimizer) and codecarbon's hardware probe take about as long, once
per process. :class:`WarmKernel` keeps one kernel alive across the notebooks
that :func:`~resque.study.runner.run_study` executes one after another, and
before each notebook but the first it clears what the previous one left:

- the user namespace and the output history (``InteractiveShell.reset`` with
  a new session, so that execution counts start at 1 again);
- open matplotlib figures;
- the warnings' "already shown" registries, so that a warning shows in every
  notebook that triggers it, as it would in a kernel of its own;
- the notebook's reference cycles (a garbage collection after the namespace
  is cleared); what survives it is then frozen (``gc.freeze``), so that later
  collections walk one notebook's objects instead of every imported module's:
  with PyTorch and the study imported, a trivial notebook in a warm kernel
  takes about 0.02 s instead of 0.13 s. The price: an object alive at a
  reset that later becomes part of an unreachable cycle is never collected
  (one that simply loses its last reference is still freed).

The client that sends the reset is the one the next notebook gets, already
connected: papermill's readiness check on a new client ends with 0.2 s of
listening for stray broadcasts, which is most of a notebook's fixed cost once
the kernel is warm, so it is skipped for a client that has just heard the
kernel finish the reset.

What stays are imported modules and the caches they hold (the shared energy
tracker of :mod:`resque.cost.energy`), which is the point. Every experiment
seeds its own randomness, so a notebook computes the same numbers in a warm
kernel as in a fresh one (``tests/test_kernels.py`` checks the records).
After a notebook fails, or its kernel dies, the kernel is shut down and the
next notebook gets a fresh one: a failure never leaves its state to the next
experiment. ``run_study(..., fresh_kernels=True)`` (``--fresh-kernels``) gives
every notebook a kernel of its own.

The kernels start with :data:`MALLOC_TUNING` in their environment (unless the
environment already sets those variables): glibc's allocator then keeps the
memory a training step or a distance matrix frees for the next one, instead
of handing it back to the system and taking fresh pages, each zeroed, again.
``benchmarks/bench_kernels.py`` measures both choices side by side; on the
2-core VM this project is tested on it printed, for one shift page in a new
process, a wall time 0.68 times glibc's defaults (its training 0.60 times),
and for the smoke study in one kernel 0.48 times the wall time with a kernel
per notebook. The numbers computed are the same; the price is that the
kernel's memory stays at its high-water mark until it exits. Other C
libraries ignore the variables.

They also start with :data:`BLAS_TUNING`: numpy's OpenBLAS threads then go
to sleep as soon as a product is done, instead of spinning for a while on
the cores that PyTorch's threads need next (on 2 cores, two forward passes of
the small CNN just after a numpy product took 131 ms instead of 72 ms; with
the tuning, 86 and 88 ms). ``bench_kernels.py`` measures a shift page with
and without it. Together they are :data:`KERNEL_TUNING`.
"""

from __future__ import annotations

import os
import time

from ..errors import ResqueError

__all__ = ["BLAS_TUNING", "KERNEL_TUNING", "MALLOC_TUNING", "RESET_CODE", "WarmKernel"]

#: glibc malloc settings the study's kernels start with: no memory handed back below 4 GiB of free heap,
#: and allocations under 4 GiB served from the heap (so reused) rather than by fresh mappings.
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(4 * 2**30), "MALLOC_TRIM_THRESHOLD_": str(4 * 2**30)}

#: OpenBLAS settings the study's kernels start with: its idle threads wait 2**4 cycles, not OpenBLAS's
#: default 2**28 or so, before they sleep (numpy's products run as fast; PyTorch's next operations get the cores)
BLAS_TUNING = {"OPENBLAS_THREAD_TIMEOUT": "4"}

#: Every environment variable the study's kernels start with, unless the environment sets it already.
KERNEL_TUNING = {**MALLOC_TUNING, **BLAS_TUNING}

#: Run in the kernel between two notebooks; it binds no name in the namespace it clears.
RESET_CODE = "\n".join([
    "import sys as _resque_sys",
    "if 'matplotlib.pyplot' in _resque_sys.modules:",
    "    _resque_sys.modules['matplotlib.pyplot'].close('all')",
    "getattr(_resque_sys.modules['warnings'], '_filters_mutated', lambda: None)()",
    # a notebook may change how its figures are shown (the shift and task pages do not crop them); the next
    # notebook gets the inline backend's default back
    "_resque_inline = _resque_sys.modules.get('matplotlib_inline.config')",
    "if _resque_inline is not None and _resque_inline.InlineBackend.initialized():",
    "    _resque_inline = _resque_inline.InlineBackend.instance()",
    "    _resque_inline.print_figure_kwargs = _resque_inline.trait_defaults('print_figure_kwargs')",
    "get_ipython().reset(new_session=True)",
    # The reset's own collection runs before the namespace is cleared; this one frees the notebook's cycles.
    # What survives it (modules and their caches) is then set aside from later collections, so that the
    # next reset's collections walk one notebook's objects, not every module's.
    "__import__('gc').collect()",
    "__import__('gc').freeze()",
])


class WarmKernel:
    """A kernel manager that papermill reuses from one notebook to the next.

    Parameters
    ----------
    kernel_name : str
        The Jupyter kernel to start (``"python3"``).
    reset_timeout : float, default 120
        Seconds the reset between two notebooks may take before the kernel is
        replaced by a fresh one.
    reuse : bool, default True
        False shuts the kernel down after every notebook (:meth:`release`):
        each notebook gets a kernel of its own, started the same way.

    Examples
    --------
    >>> kernel = WarmKernel("python3")  # doctest: +SKIP
    >>> papermill.execute_notebook(a, out_a, km=kernel.manager())  # doctest: +SKIP
    >>> papermill.execute_notebook(b, out_b, km=kernel.manager())  # doctest: +SKIP
    >>> kernel.close()  # doctest: +SKIP
    """

    def __init__(self, kernel_name: str, *, reset_timeout: float = 120.0, reuse: bool = True):
        self.kernel_name = kernel_name
        self.reset_timeout = reset_timeout
        self.reuse = reuse
        self.notebooks = 0  # executed in the current kernel
        self.kernels = 0  # started, over the whole study
        self._km = None

    def manager(self):
        """The kernel manager for the next notebook: the running kernel, wiped clean, or a new one.

        A manager without a kernel yet is started by papermill (nbclient) the
        way it starts its own, with the same arguments; it is not shut down at
        the end of the notebook because papermill does not own it.
        """
        from jupyter_core.utils import run_sync

        if self._km is not None and self._km.has_kernel:
            try:
                alive = run_sync(self._km.is_alive)()
            except Exception:
                alive = False
            if alive and self._reset():
                self.notebooks += 1
                return self._km
            self.discard()
        if self._km is None:
            self._km = _TrackedKernelManager(kernel_name=self.kernel_name)
            self.kernels += 1
            self.notebooks = 1
        return self._km

    def release(self) -> None:
        """Close the connections papermill opened for the notebook that just ended (the kernel stays, if reused)."""
        if not self.reuse:
            self.discard()
        elif self._km is not None:
            self._km.release_clients()

    def discard(self) -> None:
        """Shut the kernel down (after a failure): the next notebook starts a fresh one."""
        km, self._km = self._km, None
        if km is None:
            return
        from jupyter_core.utils import run_sync

        km.release_clients()
        try:
            if km.has_kernel:
                run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # a kernel already gone; nothing of the study's is lost with it
            pass

    close = discard

    def __enter__(self) -> "WarmKernel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reset(self) -> bool:
        """Clear what the last notebook left in the kernel; False if the kernel does not answer as it should.

        The client that sends the reset is the one the next notebook gets
        (:meth:`TrackedKernelManager.client`). Its replies come on the shell
        channel; once the kernel's broadcast of the reset's end has arrived
        too, both channels are known to listen, and the readiness check that
        papermill runs on a new client (a kernel-info request, then 0.2 s of
        listening for stray broadcasts) is not needed: it is skipped for that
        client. A broadcast a channel connected just then missed only means
        the check runs as usual.
        """
        from jupyter_core.utils import run_sync

        client = self._km.client()
        # shell and broadcast only: papermill starts the others (a heartbeat channel starts once)
        client.start_channels(stdin=False, hb=False, control=False)
        deadline = time.monotonic() + self.reset_timeout

        def reply_to(sent: str, channel) -> dict:
            while True:
                message = run_sync(channel)(timeout=max(0.0, deadline - time.monotonic()))
                if message.get("parent_header", {}).get("msg_id") == sent:
                    return message

        try:
            # what papermill's check would learn: the kernel's protocol version
            client._handle_kernel_info_reply(reply_to(client.kernel_info(), client.get_shell_msg))
            sent = client.execute(RESET_CODE, silent=True, store_history=False)
            reply = reply_to(sent, client.get_shell_msg)
        except Exception:  # no reply in time, or a kernel gone
            client.stop_channels()
            return False
        if reply.get("content", {}).get("status") != "ok":
            client.stop_channels()
            return False
        client.resque_listening = _heard_idle(client, sent)
        self._km.hand_over(client)
        return True


def _heard_idle(client, sent: str, wait: float = 0.5) -> bool:
    """Whether the kernel's "idle" broadcast after message `sent` reaches `client` within `wait` seconds."""
    from jupyter_core.utils import run_sync

    deadline = time.monotonic() + wait
    try:
        while True:
            message = run_sync(client.get_iopub_msg)(timeout=max(0.0, deadline - time.monotonic()))
            if (message.get("parent_header", {}).get("msg_id") == sent and message.get("msg_type") == "status"
                    and message.get("content", {}).get("execution_state") == "idle"):
                return True
    except Exception:  # nothing more within the wait
        return False


def _tracked_manager_class():
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

    class ListeningClient(AsyncKernelClient):
        """A kernel client whose readiness check is skipped once, when :meth:`WarmKernel._reset` has shown it listens."""

        resque_listening = False

        async def wait_for_ready(self, timeout=None):
            if self.resque_listening:
                self.resque_listening = False
                return
            await super().wait_for_ready(timeout=timeout)

    class TrackedKernelManager(AsyncKernelManager):
        """An AsyncKernelManager that remembers the clients it hands out, so that they can be closed."""

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.client_factory = ListeningClient
            self._resque_clients = []
            self._resque_ready = None

        async def _async_pre_start_kernel(self, **kw):
            env = dict(kw.get("env") or os.environ)
            for name, value in KERNEL_TUNING.items():
                env.setdefault(name, value)  # the user's own setting wins
            kw["env"] = env
            return await super()._async_pre_start_kernel(**kw)

        def client(self, **kwargs):
            ready, self._resque_ready = self._resque_ready, None
            if ready is not None and not kwargs:
                return ready  # connected already, and tracked when it was made
            client = super().client(**kwargs)
            self._resque_clients.append(client)
            return client

        def hand_over(self, client) -> None:
            """`client` (one of this manager's) is what the next call of :meth:`client` returns."""
            self._resque_ready = client

        def release_clients(self) -> None:
            self._resque_ready = None
            clients, self._resque_clients = self._resque_clients, []
            for client in clients:
                try:
                    client.stop_channels()
                except Exception:
                    pass

    return TrackedKernelManager


def _TrackedKernelManager(**kwargs):
    try:
        cls = _tracked_manager_class()
    except ImportError as error:
        raise ResqueError(f"The study runner needs jupyter_client ({error}): pip install papermill ipykernel") from None
    return cls(**kwargs)
