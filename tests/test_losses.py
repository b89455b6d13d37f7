"""Tests of distill.losses: values computed by hand on tiny tensors, invariants, gradients, registry."""

import math

import numpy as np
import pytest
import torch

from distill.losses import (
    LOSSES,
    AttentionTransferLoss,
    CosineEmbeddingLoss,
    DistillationLoss,
    DISTLoss,
    DKDLoss,
    EmbeddingMSELoss,
    BoxHeadImitationLoss,
    FeatureImitationLoss,
    HeadImitationLoss,
    FitNetLoss,
    KDLoss,
    MultiLabelKDLoss,
    PKTLoss,
    RKDLoss,
    SPKDLoss,
    create_loss,
    list_losses,
    register_loss,
)

EXPECTED_CLASSES = {
    "kd": KDLoss,
    "dkd": DKDLoss,
    "dist": DISTLoss,
    "multilabel_kd": MultiLabelKDLoss,
    "embedding_mse": EmbeddingMSELoss,
    "cosine": CosineEmbeddingLoss,
    "fitnet": FitNetLoss,
    "attention": AttentionTransferLoss,
    "rkd": RKDLoss,
    "pkt": PKTLoss,
    "spkd": SPKDLoss,
    "feature_imitation": FeatureImitationLoss,
    "head_imitation": HeadImitationLoss,
    "box_head_imitation": BoxHeadImitationLoss,
}

# The losses that compare tensors of one kind; the detection losses take a detector's structured outputs and are
# tested in test_detection.py.
TENSOR_LOSSES = sorted(set(EXPECTED_CLASSES) - {"feature_imitation", "head_imitation", "box_head_imitation"})

S_LOGITS = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
T_LOGITS = [[3.0, 1.0, 0.0], [1.0, 1.5, -0.5]]


def tensor(values):
    return torch.tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------- plain-python references


def softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0)


def sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def pearson(a, b):
    return float(np.corrcoef(np.asarray(a), np.asarray(b))[0, 1])


def smooth_l1(a, b):
    d = abs(a - b)
    return 0.5 * d * d if d < 1.0 else d - 0.5


def inputs_for(name, batch=4, seed=0):
    """Random (student, teacher) inputs of the kind the named loss consumes."""
    generator = torch.Generator().manual_seed(seed)
    kind = EXPECTED_CLASSES[name].kind
    if kind == "logits":
        shape = (batch, 5)
    elif kind == "embedding":
        shape = (batch, 6)
    else:
        shape = (batch, 3, 4, 4)
    student = torch.randn(shape, generator=generator, dtype=torch.float64) * 2
    teacher = torch.randn(shape, generator=generator, dtype=torch.float64) * 2
    return student, teacher


# ---------------------------------------------------------------- hand-computed values


def test_kd_value_by_hand():
    temperature = 2.0
    expected = 0.0
    for s, t in zip(S_LOGITS, T_LOGITS):
        expected += kl(softmax(t, temperature), softmax(s, temperature))
    expected = expected / len(S_LOGITS) * temperature**2
    value = KDLoss(temperature=temperature)(tensor(S_LOGITS), tensor(T_LOGITS))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert KDLoss().temperature == 4.0


def test_multilabel_kd_value_by_hand():
    temperature = 2.0
    terms = []
    for s_row, t_row in zip(S_LOGITS, T_LOGITS):
        for s, t in zip(s_row, t_row):
            q = sigmoid(t / temperature)
            p = sigmoid(s / temperature)
            terms.append(-(q * math.log(p) + (1 - q) * math.log(1 - p)))
    expected = sum(terms) / len(terms) * temperature**2
    value = MultiLabelKDLoss(temperature=temperature)(tensor(S_LOGITS), tensor(T_LOGITS))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    assert MultiLabelKDLoss().temperature == 1.0


def test_embedding_mse_value_by_hand():
    s = [[1.0, 2.0, 2.0], [0.0, -1.0, 3.0]]
    t = [[0.0, 2.0, 4.0], [1.0, 1.0, 1.0]]
    # per sample: 1 + 0 + 4 = 5 and 1 + 4 + 4 = 9 -> mean 7
    assert EmbeddingMSELoss()(tensor(s), tensor(t)).item() == pytest.approx(7.0, rel=1e-5)

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    expected = sum(sum((a - b) ** 2 for a, b in zip(unit(sv), unit(tv))) for sv, tv in zip(s, t)) / 2
    value = EmbeddingMSELoss(normalize=True)(tensor(s), tensor(t))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_cosine_value_by_hand():
    s = [[1.0, 0.0], [1.0, 1.0]]
    t = [[0.0, 2.0], [3.0, 3.0]]
    # cosines 0 and 1 -> losses 1 and 0 -> mean 0.5
    assert CosineEmbeddingLoss()(tensor(s), tensor(t)).item() == pytest.approx(0.5, rel=1e-5)
    s2 = [[1.0, 2.0, 3.0]]
    t2 = [[3.0, -1.0, 1.0]]
    cos = (3 - 2 + 3) / (math.sqrt(14) * math.sqrt(11))
    assert CosineEmbeddingLoss()(tensor(s2), tensor(t2)).item() == pytest.approx(1 - cos, rel=1e-5)


def test_fitnet_value_by_hand():
    s = np.arange(16, dtype=np.float64).reshape(2, 2, 2, 2) / 4.0
    t = np.ones((2, 2, 2, 2))
    expected = sum((a - 1.0) ** 2 for a in s.ravel()) / 16
    value = FitNetLoss()(torch.from_numpy(s), torch.from_numpy(t))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def attention_reference(feature, p, size=None):
    """Per-sample attention vectors of a (B, C, H, W) numpy array, pooled to ``size`` by block means."""
    batch, channels, height, width = feature.shape
    maps = []
    for b in range(batch):
        energy = [[sum(abs(feature[b, c, i, j]) ** p for c in range(channels)) / channels for j in range(width)]
                  for i in range(height)]
        if size is not None and size != (height, width):
            bh, bw = height // size[0], width // size[1]
            energy = [[sum(energy[i * bh + di][j * bw + dj] for di in range(bh) for dj in range(bw)) / (bh * bw)
                       for j in range(size[1])] for i in range(size[0])]
        flat = [v for row in energy for v in row]
        norm = math.sqrt(sum(v * v for v in flat))
        maps.append([v / norm for v in flat])
    return maps


def test_attention_transfer_value_by_hand():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(2, 3, 2, 2))
    t = rng.normal(size=(2, 5, 2, 2))  # channel counts may differ
    for p in (2, 1):
        a_s, a_t = attention_reference(s, p), attention_reference(t, p)
        diffs = [(x - y) ** 2 for ms, mt in zip(a_s, a_t) for x, y in zip(ms, mt)]
        expected = sum(diffs) / len(diffs)
        value = AttentionTransferLoss(p=p)(torch.from_numpy(s), torch.from_numpy(t))
        assert value.item() == pytest.approx(expected, rel=1e-5)


def test_attention_transfer_pools_the_larger_map():
    rng = np.random.default_rng(2)
    s = rng.normal(size=(2, 3, 2, 2))
    t = rng.normal(size=(2, 4, 4, 4))
    a_s, a_t = attention_reference(s, 2), attention_reference(t, 2, size=(2, 2))
    diffs = [(x - y) ** 2 for ms, mt in zip(a_s, a_t) for x, y in zip(ms, mt)]
    expected = sum(diffs) / len(diffs)
    loss = AttentionTransferLoss()
    assert loss(torch.from_numpy(s), torch.from_numpy(t)).item() == pytest.approx(expected, rel=1e-5)
    # symmetric case: the student map is the larger one
    assert loss(torch.from_numpy(t), torch.from_numpy(s)).item() == pytest.approx(expected, rel=1e-5)


def rkd_reference(s, t):
    n = len(s)

    def distances(x):
        d = [[float(np.linalg.norm(x[i] - x[j])) for j in range(n)] for i in range(n)]
        mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
        return [[v / mean for v in row] for row in d]

    def cosines(x):
        out = {}
        for i in range(n):
            for j in range(n):
                for k in range(n):
                    a, b = x[j] - x[i], x[k] - x[i]
                    if j == i or k == i:
                        out[i, j, k] = 0.0
                    else:
                        out[i, j, k] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
        return out

    ds, dt = distances(s), distances(t)
    distance = sum(smooth_l1(ds[i][j], dt[i][j]) for i in range(n) for j in range(n)) / n**2
    cs, ct = cosines(s), cosines(t)
    angle = sum(smooth_l1(cs[key], ct[key]) for key in cs) / n**3
    return distance, angle


def test_rkd_value_by_hand():
    s = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    t = np.array([[0.0, 0.0, 1.0], [3.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 2.0, 0.5]])  # widths may differ
    distance, angle = rkd_reference(s, t)
    assert distance > 0 and angle > 0
    s_t, t_t = torch.from_numpy(s), torch.from_numpy(t)
    assert RKDLoss()(s_t, t_t).item() == pytest.approx(25.0 * distance + 50.0 * angle, rel=1e-5)
    assert RKDLoss(1.0, 0.0)(s_t, t_t).item() == pytest.approx(distance, rel=1e-5)
    assert RKDLoss(0.0, 1.0)(s_t, t_t).item() == pytest.approx(angle, rel=1e-5)


def test_pkt_value_by_hand():
    s = np.array([[1.0, 0.0], [1.0, 1.0], [-1.0, 2.0]])
    t = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, -1.0, 1.0]])
    eps = 1e-7

    def conditional(x):
        sims = [[(float(x[i] @ x[j]) / (np.linalg.norm(x[i]) * np.linalg.norm(x[j])) + 1) / 2 for j in range(3)]
                for i in range(3)]
        return [[v / sum(row) for v in row] for row in sims]

    ps, pt = conditional(s), conditional(t)
    expected = sum(pt[i][j] * math.log(pt[i][j] / ps[i][j]) for i in range(3) for j in range(3)) / 9
    value = PKTLoss()(torch.from_numpy(s), torch.from_numpy(t))
    # eps only enters as 1e-7 next to norms and probabilities of order 0.1-1
    assert value.item() == pytest.approx(expected, rel=1e-5, abs=10 * eps)
    assert value.item() > 1e-3


def test_spkd_value_by_hand():
    rng = np.random.default_rng(3)
    s = rng.normal(size=(3, 2, 2, 2))
    t = rng.normal(size=(3, 5, 1, 1))  # channel counts and spatial sizes may differ

    def normalised_gram(x):
        flat = x.reshape(len(x), -1)
        gram = [[float(flat[i] @ flat[j]) for j in range(len(x))] for i in range(len(x))]
        return [[v / math.sqrt(sum(w * w for w in row)) for v in row] for row in gram]

    gs, gt = normalised_gram(s), normalised_gram(t)
    expected = sum((gs[i][j] - gt[i][j]) ** 2 for i in range(3) for j in range(3)) / 9
    value = SPKDLoss()(torch.from_numpy(s), torch.from_numpy(t))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_dist_value_by_hand():
    s = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 1.0, -1.0]]
    t = [[3.0, 1.0, 0.0], [1.0, 1.5, -0.5], [2.0, 0.0, 1.0]]
    for tau, beta, gamma in ((1.0, 1.0, 1.0), (2.0, 0.5, 2.0)):
        ys = [softmax(row, tau) for row in s]
        yt = [softmax(row, tau) for row in t]
        inter = 1 - sum(pearson(a, b) for a, b in zip(ys, yt)) / 3
        columns_s = [[row[c] for row in ys] for c in range(3)]
        columns_t = [[row[c] for row in yt] for c in range(3)]
        intra = 1 - sum(pearson(a, b) for a, b in zip(columns_s, columns_t)) / 3
        expected = tau**2 * (beta * inter + gamma * intra)
        value = DISTLoss(beta=beta, gamma=gamma, tau=tau)(tensor(s), tensor(t))
        assert value.item() == pytest.approx(expected, rel=1e-5)


def dkd_reference(s_rows, t_rows, targets, alpha, beta, temperature):
    total = 0.0
    for s, t, target in zip(s_rows, t_rows, targets):
        ps, pt = softmax(s, temperature), softmax(t, temperature)
        tckd = kl([pt[target], 1 - pt[target]], [ps[target], 1 - ps[target]])
        rest = [c for c in range(len(s)) if c != target]
        nckd = kl(softmax([t[c] for c in rest], temperature), softmax([s[c] for c in rest], temperature))
        total += alpha * tckd + beta * nckd
    return total / len(s_rows) * temperature**2


def test_dkd_value_by_hand():
    s = tensor(S_LOGITS)
    t = tensor(T_LOGITS)
    expected = dkd_reference(S_LOGITS, T_LOGITS, [2, 0], 1.0, 8.0, 4.0)
    assert DKDLoss()(s, t, target=torch.tensor([2, 0])).item() == pytest.approx(expected, rel=1e-5)
    expected = dkd_reference(S_LOGITS, T_LOGITS, [2, 0], 0.5, 2.0, 2.0)
    value = DKDLoss(alpha=0.5, beta=2.0, temperature=2.0)(s, t, target=torch.tensor([2, 0]))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_dkd_without_labels_uses_teacher_argmax():
    s, t = tensor(S_LOGITS), tensor(T_LOGITS)
    argmax = [max(range(3), key=lambda c: row[c]) for row in T_LOGITS]  # [0, 1]
    expected = dkd_reference(S_LOGITS, T_LOGITS, argmax, 1.0, 8.0, 4.0)
    assert DKDLoss()(s, t).item() == pytest.approx(expected, rel=1e-5)
    assert DKDLoss()(s, t).item() != pytest.approx(DKDLoss()(s, t, target=torch.tensor([2, 2])).item())


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("name", sorted(set(TENSOR_LOSSES) - {"multilabel_kd"}))
def test_zero_when_student_equals_teacher_and_positive_otherwise(name):
    loss = create_loss(name)
    student, teacher = inputs_for(name)
    assert loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-5)
    assert loss(student, teacher).item() > 1e-3


def test_multilabel_kd_minimum_is_the_teacher_entropy():
    temperature = 2.0
    loss = MultiLabelKDLoss(temperature=temperature)
    entropies = []
    for row in T_LOGITS:
        for t in row:
            q = sigmoid(t / temperature)
            entropies.append(-(q * math.log(q) + (1 - q) * math.log(1 - q)))
    entropy = sum(entropies) / len(entropies) * temperature**2
    student = tensor(T_LOGITS).requires_grad_(True)
    at_teacher = loss(student, tensor(T_LOGITS))
    assert at_teacher.item() == pytest.approx(entropy, rel=1e-5)
    at_teacher.backward()
    assert torch.allclose(student.grad, torch.zeros_like(student.grad), atol=1e-12)  # a minimum
    assert loss(tensor(S_LOGITS), tensor(T_LOGITS)).item() > entropy + 1e-3


def test_kd_t_squared_scaling_keeps_gradient_magnitude():
    # Hinton et al. Sec. 2.1: at high T the gradient of KL * T^2 tends to (z - v) / N for zero-mean
    # logits, independent of T; without the T^2 factor it would shrink as 1 / T^2.
    s, t = tensor(S_LOGITS), tensor(T_LOGITS)
    batch, classes = s.shape
    centred = (s - s.mean(1, keepdim=True)) - (t - t.mean(1, keepdim=True))
    limit = centred / (classes * batch)
    norms = []
    for temperature in (20.0, 100.0, 500.0):
        student = s.clone().requires_grad_(True)
        KDLoss(temperature=temperature)(student, t).backward()
        norms.append(student.grad.norm().item())
        assert torch.allclose(student.grad, limit, rtol=0.1, atol=0.1 * limit.abs().max().item())
    assert max(norms) / min(norms) < 1.1


def test_rkd_is_invariant_to_scaling_either_embedding():
    student, teacher = inputs_for("rkd", batch=5)
    loss = RKDLoss()
    reference = loss(student, teacher).item()
    assert loss(student * 3.7, teacher).item() == pytest.approx(reference, rel=1e-5)
    assert loss(student * 3.7, teacher * 0.2).item() == pytest.approx(reference, rel=1e-5)


def test_spkd_is_invariant_to_scaling_either_activation():
    student, teacher = inputs_for("spkd", batch=5)
    loss = SPKDLoss()
    reference = loss(student, teacher).item()
    assert loss(student * 5.0, teacher).item() == pytest.approx(reference, rel=1e-5)
    assert loss(student * 5.0, teacher * 0.1).item() == pytest.approx(reference, rel=1e-5)


def test_dkd_decomposes_classical_kd():
    # Zhao et al. 2022, Eq. (7): KD = TCKD + (1 - p_target^teacher) * NCKD, per sample.
    temperature = 3.0
    for s_row, t_row, target in zip(S_LOGITS, T_LOGITS, (2, 1)):
        s, t = tensor([s_row]), tensor([t_row])
        label = torch.tensor([target])
        kd = KDLoss(temperature=temperature)(s, t).item()
        tckd = DKDLoss(alpha=1.0, beta=0.0, temperature=temperature)(s, t, target=label).item()
        nckd = DKDLoss(alpha=0.0, beta=1.0, temperature=temperature)(s, t, target=label).item()
        p_target = softmax(t_row, temperature)[target]
        assert kd == pytest.approx(tckd + (1 - p_target) * nckd, rel=1e-5)


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", TENSOR_LOSSES)
def test_gradient_reaches_the_student_only(name):
    loss = create_loss(name)
    student, teacher = inputs_for(name)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    value = loss(student, teacher)
    assert value.dim() == 0
    value.backward()
    assert teacher.grad is None
    assert torch.isfinite(student.grad).all()
    assert student.grad.abs().sum().item() > 0


def test_dkd_gradient_with_labels():
    student, teacher = inputs_for("dkd")
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    DKDLoss()(student, teacher, target=torch.tensor([0, 1, 2, 3])).backward()
    assert teacher.grad is None
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum().item() > 0


# ---------------------------------------------------------------- input validation


@pytest.mark.parametrize("name", ["kd", "dkd", "dist", "multilabel_kd", "embedding_mse", "cosine", "fitnet"])
def test_shape_mismatch_names_both_shapes(name):
    loss = create_loss(name)
    kind = EXPECTED_CLASSES[name].kind
    if kind == "features":
        student, teacher = torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, 4)
    else:
        student, teacher = torch.zeros(2, 5), torch.zeros(2, 7)
    with pytest.raises(ValueError) as error:
        loss(student, teacher)
    message = str(error.value)
    assert str(tuple(student.shape)) in message and str(tuple(teacher.shape)) in message


def test_fitnet_shape_mismatch_asks_for_an_adapter():
    with pytest.raises(ValueError, match="adapter"):
        FitNetLoss()(torch.zeros(2, 3, 4, 4), torch.zeros(2, 5, 4, 4))


@pytest.mark.parametrize("name", ["rkd", "pkt", "spkd", "attention"])
def test_batch_mismatch_raises(name):
    shape = (3, 4, 4) if name == "attention" else (4,)
    with pytest.raises(ValueError, match="batch"):
        create_loss(name)(torch.zeros(2, *shape), torch.zeros(3, *shape))


def test_rkd_needs_two_samples():
    with pytest.raises(ValueError, match="at least 2"):
        RKDLoss()(torch.zeros(1, 4), torch.zeros(1, 4))


def test_dkd_rejects_bad_targets():
    s, t = tensor(S_LOGITS), tensor(T_LOGITS)
    with pytest.raises(ValueError, match="target"):
        DKDLoss()(s, t, target=torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="target"):
        DKDLoss()(s, t, target=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="target"):
        DKDLoss()(s, t, target=torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize(
    "factory",
    [
        lambda: KDLoss(temperature=0.0),
        lambda: DKDLoss(beta=-1.0),
        lambda: DISTLoss(tau=-2.0),
        lambda: MultiLabelKDLoss(temperature=float("nan")),
        lambda: AttentionTransferLoss(p=0),
        lambda: RKDLoss(distance_weight=-1.0),
        lambda: EmbeddingMSELoss(normalize="yes"),
    ],
)
def test_bad_hyperparameters_raise(factory):
    with pytest.raises(ValueError):
        factory()


# ---------------------------------------------------------------- registry


def test_every_name_creates_its_class():
    assert list_losses() == sorted(EXPECTED_CLASSES)
    for name, cls in EXPECTED_CLASSES.items():
        assert LOSSES[name] is cls
        loss = create_loss(name)
        assert type(loss) is cls and isinstance(loss, DistillationLoss)
        assert loss.kind in ("logits", "embedding", "features")
        assert loss.uses_target == (name == "dkd")


def test_create_loss_passes_hyperparameters():
    assert create_loss("kd", temperature=2.5).temperature == 2.5
    loss = create_loss("dkd", alpha=2.0, beta=4.0, temperature=1.0)
    assert (loss.alpha, loss.beta, loss.temperature) == (2.0, 4.0, 1.0)


def test_unknown_name_lists_known_names_and_suggests():
    with pytest.raises(ValueError) as error:
        create_loss("spdk")
    message = str(error.value)
    assert "spdk" in message and "'spkd'" in message
    for name in EXPECTED_CLASSES:
        assert name in message


def test_unknown_argument_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError) as error:
        create_loss("kd", temprature=2.0)
    assert "temprature" in str(error.value) and "temperature" in str(error.value).replace("temprature", "")


def test_register_loss_adds_a_name_and_refuses_duplicates():
    class HalfKD(KDLoss):
        """KD at half weight (test only)."""

    try:
        assert register_loss("half_kd_test")(HalfKD) is HalfKD
        assert isinstance(create_loss("half_kd_test"), HalfKD)
        with pytest.raises(ValueError, match="already"):
            register_loss("kd")(HalfKD)
        with pytest.raises(TypeError):
            register_loss("not_a_loss_test")(dict)
    finally:
        LOSSES.pop("half_kd_test", None)
