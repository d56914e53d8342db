"""A distributed run whose peer died says so in one line; anything else still raises as the bug it is."""

import pytest
import torch.distributed as dist

from ldm.cli import run
from ldm.errors import LdmError
from ldm.train.checkpoints import FORMAT, STATE_FILE, TrainingState, load_checkpoint
from ldm.train.distributed import lost_process

GLOO_RESET = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error "
              "[127.0.0.1]:3985: Connection reset by peer. This is typically caused by a remote worker hanging")


def test_gloo_peer_reset_is_one_line_naming_resume():
    line = lost_process(RuntimeError(GLOO_RESET))
    assert line.startswith("a process of this distributed run was lost (Read error [127.0.0.1]:3985: Connection "
                           "reset by peer)")
    assert "--resume latest" in line and "\n" not in line and "pair.cc" not in line


def test_backend_errors_count_too():  # NCCL's watchdog and store failures raise torch's DistError family
    assert lost_process(dist.DistBackendError("NCCL watchdog timeout: collective ALLREDUCE ran 600000 ms"))
    assert lost_process(dist.DistNetworkError("failed to recv, got 0 bytes"))


@pytest.mark.parametrize("exc", [RuntimeError("mat1 and mat2 shapes cannot be multiplied"), ValueError("gloo"),
                                 RuntimeError("gloo/transport: something unrelated")])
def test_other_errors_are_not_lost_processes(exc):
    assert lost_process(exc) is None


def test_cli_reraises_runtime_errors_outside_a_distributed_run():
    def main():
        raise RuntimeError(GLOO_RESET)

    with pytest.raises(RuntimeError):  # no process group here: not a lost peer, a bug to see whole
        run(main)


def test_a_checkpoint_from_fsdp_refuses_a_run_that_is_not(tmp_path):
    import torch

    (tmp_path / STATE_FILE).write_text(f'{{"step": 3, "format": "{FORMAT}", "optimizer_keys": "names"}}')
    with pytest.raises(LdmError, match="saved by an FSDP run and cannot resume one that is not"):
        load_checkpoint(None, tmp_path, TrainingState(models=[torch.nn.Linear(2, 2)]))
