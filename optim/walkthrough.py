"""The IQ / CGPA walkthrough of the README: ``python -m optim.walkthrough``.

AdaGrad keeps a large effective rate for a mostly absent feature (IQ) and shrinks it for a
busy one (CGPA). The README shows this file's code; a test keeps the two identical.
"""

import numpy as np

from optim import OnlineLogisticRegression

rng = np.random.default_rng(0)
rows, labels = [], []
for _ in range(2_000):
    cgpa = rng.uniform(5.0, 10.0)
    features = {"CGPA": cgpa / 10}  # scaled to about 1
    if rng.random() < 0.1:  # IQ is mostly absent
        features["IQ"] = rng.normal(110, 15) / 100
    rows.append(features)
    labels.append(int(rng.random() < 1 / (1 + np.exp(-(cgpa - 7.5)))))  # placed or not

model = OnlineLogisticRegression({"name": "adagrad", "lr": 0.5}, hash_bits=18)
result = model.learn(rows, labels)  # or model.partial_fit(rows, labels)
print(f"progressive log-loss {result.log_loss:.3f}")

iq, cgpa = model.inspect_coordinates(features=["IQ", "CGPA"])
for c in (iq, cgpa):
    print(
        f"{c['feature']:>4}: weight {c['weight']:+.3f}  "
        f"effective rate {c['effective_learning_rate']:.4f}  "
        f"touched {c['times_touched']} times, last at step {c['last_touched_step']}  "
        f"state {c['state']}"
    )
assert iq["effective_learning_rate"] > cgpa["effective_learning_rate"]
