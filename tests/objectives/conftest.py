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


@pytest.fixture
def train_bandit(bandit_rollouts):
    """``train(objective, reward_table, steps, group_size=8, lr=0.1)``: train a tabular softmax
    policy (one row of logits per context, uniform at first) with ``objective`` on G sampled
    actions per context (reference: the uniform policy); returns the expected reward before
    and after."""
    import math

    from geozoo.objectives import StepContext
    from geozoo.rl import group_ids

    def train(objective, reward_table, steps, group_size=8, lr=0.1):
        contexts, actions_count = reward_table.shape
        gen = torch.Generator().manual_seed(0)
        logits = torch.nn.Parameter(torch.zeros(contexts, actions_count))
        optimizer = torch.optim.Adam([logits], lr=lr)

        def expected_reward() -> float:
            return float((logits.detach().softmax(-1) * reward_table).sum(-1).mean())

        start = expected_reward()
        for _ in range(steps):
            probs = logits.detach().softmax(-1)
            actions = torch.multinomial(probs, group_size, True, generator=gen).reshape(-1, 1)
            group = group_ids(contexts, group_size)
            logp = logits.log_softmax(-1)[group, actions[:, 0]][:, None]
            ref_logp = torch.full_like(logp, -math.log(actions_count)).detach()
            rollouts = bandit_rollouts(
                torch.arange(contexts), group, actions, reward_table, logp, ref_logp=ref_logp
            )
            ctx = StepContext(None, None, logp, None, extras={"rollouts": rollouts})
            optimizer.zero_grad()
            objective(ctx).loss.backward()
            optimizer.step()
        return start, expected_reward()

    return train
