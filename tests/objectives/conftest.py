import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The objective tests run many tiny ops, where intra-op threads only add overhead."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def free_port() -> int:
    """A free TCP port on localhost, for DDP tests on gloo."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bandit_rollouts():
    """``build(prompts, group, actions, reward_table, logp, **fields)``: Rollouts of one-token
    responses (a contextual bandit), on-policy, with rewards read from ``reward_table``."""
    from geozoo.rl import Rollouts

    def build(prompts, group, actions, reward_table, logp, **fields):
        return Rollouts(
            prompts=prompts,
            group=group,
            responses=actions,
            mask=torch.ones_like(actions, dtype=torch.bool),
            rewards=reward_table[group, actions[:, 0]],
            logp=logp,
            old_logp=logp.detach(),
            **fields,
        )

    return build
