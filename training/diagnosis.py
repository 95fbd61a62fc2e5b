"""The lesson's "what can go wrong", read off a run's curves and said in plain words."""

from __future__ import annotations


def diagnose(history: list[dict]) -> list[str]:
    """Sentences about the learning rate, the number of epochs and overfitting, with next steps.

    history holds one dict per epoch with train_loss, valid_loss and error_rate.
    """
    if not history:
        return ["No epoch finished, so there is nothing to judge yet."]
    train = [h["train_loss"] for h in history]
    valid = [h["valid_loss"] for h in history]
    errors = [h["error_rate"] for h in history]
    findings = []
    best_valid = min(valid)
    if valid[-1] > 3 * max(best_valid, 1e-3) or valid[-1] != valid[-1] or valid[-1] > 10:
        findings.append(
            "The validation loss blew up: the learning rate looks too high. "
            "Retrain with a learning rate about 10× smaller, or run the learning-rate finder first."
        )
    if len(train) >= 2 and train[-1] > valid[-1]:
        findings.append(
            "The training loss is still above the validation loss: the model is underfitting "
            "(learning rate too low or too few epochs). Train for more epochs or with a higher learning rate."
        )
    elif len(train) >= 2 and (train[0] - train[-1]) < 0.05 * abs(train[0]):
        findings.append(
            "The training loss barely fell: the learning rate looks too low. Try a learning rate 3–10× higher."
        )
    if len(errors) >= 2 and errors[-2] - errors[-1] > 0.02 and errors[-1] > 0.05:
        findings.append(
            f"The error rate was still falling in the last epoch ({errors[-2]:.1%} → {errors[-1]:.1%}): "
            "train for more epochs."
        )
    best_epoch = min(range(len(errors)), key=errors.__getitem__)
    if len(errors) >= 3 and best_epoch < len(errors) - 1 and errors[-1] > errors[best_epoch] + 0.02:
        findings.append(
            f"The error rate was lowest after epoch {best_epoch + 1} and rose again: the model is overfitting. "
            f"Train for {best_epoch + 1} epochs, or add data or augmentation."
        )
    if not findings:
        findings.append(
            f"The curves look healthy: the error rate ended at {errors[-1]:.1%}. "
            "More epochs may still help while both losses keep falling."
        )
    return findings
