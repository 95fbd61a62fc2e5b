"""The plain-language diagnosis of training curves."""

from training.diagnosis import diagnose


def epochs(*rows):
    return [{"train_loss": t, "valid_loss": v, "error_rate": e} for t, v, e in rows]


def test_exploding_validation_loss_means_learning_rate_too_high():
    findings = diagnose(epochs((1.0, 0.9, 0.30), (0.8, 2.5, 0.40), (0.9, 14.0, 0.70)))
    assert any("learning rate looks too high" in f for f in findings)


def test_training_loss_above_validation_means_underfitting():
    findings = diagnose(epochs((1.2, 0.9, 0.20), (1.0, 0.8, 0.18)))
    assert any("underfitting" in f for f in findings)


def test_flat_training_loss_means_learning_rate_too_low():
    findings = diagnose(epochs((0.50, 0.60, 0.20), (0.49, 0.60, 0.20), (0.49, 0.61, 0.20)))
    assert any("too low" in f for f in findings)


def test_error_rate_rising_again_means_overfitting():
    findings = diagnose(epochs((0.9, 0.5, 0.12), (0.5, 0.4, 0.08), (0.2, 0.5, 0.11), (0.1, 0.6, 0.14)))
    assert any("overfitting" in f and "Train for 2 epochs" in f for f in findings)


def test_still_falling_error_rate_asks_for_more_epochs():
    findings = diagnose(epochs((0.9, 1.0, 0.40), (0.6, 0.7, 0.25)))
    assert any("more epochs" in f for f in findings)


def test_healthy_curves_say_so():
    findings = diagnose(epochs((0.60, 0.70, 0.05), (0.40, 0.50, 0.04)))
    assert findings == [f for f in findings if "healthy" in f] and len(findings) == 1


def test_no_epochs():
    assert "nothing to judge" in diagnose([])[0]
