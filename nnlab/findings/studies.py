"""The studies `python -m nnlab.findings` runs: each one's paper claims (option vs option) and
targets (a level to reach or stay under), and the grid cut that fits it on this machine."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Claim:
    """`better` beats `worse` on `metric` (higher or lower as the metric goes), among the runs
    matching `where`; each dict maps a param (e.g. `init.name`) to its value. With `margin`, an
    equivalence claim instead: the two differ by less than `margin` (two one-sided tests).
    `epoch`: the metric after that epoch (the paper's budget); None: the run's final value.
    `paper`: what the cited paper reports. Primary claims form the study's Holm family;
    secondary ones are tested alone and marked so."""

    text: str
    metric: str
    better: dict[str, str]
    worse: dict[str, str]
    where: dict[str, str] = field(default_factory=dict)
    paper: str = ""
    epoch: int | None = None
    margin: float | None = None
    primary: bool = True


@dataclass
class Target:
    """The runs matching `where` reach `at_least` on `metric` (one-sided one-sample t-test); with
    `below`, they stay under it."""

    text: str
    metric: str
    at_least: float
    where: dict[str, str] = field(default_factory=dict)
    paper: str = ""
    epoch: int | None = None
    below: bool = False
    primary: bool = True


@dataclass
class Study:
    name: str
    title: str
    claims: list[Claim]
    targets: list[Target] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)  # grid cut in quick mode
    full: list[str] = field(default_factory=list)  # grid cut in full mode
    # full mode: the seeds per option the study runs when --seeds is not given: the number its
    # 5-seed pilot's power analysis asked for, or a time cap (the yaml header says which)
    seeds: int | None = None
    by_default: bool = True  # False: too long for `make findings`; run it with --studies


DEFAULT_SEEDS = 5
RELU, TANH, SIGMOID = ({"activation.name": a} for a in ("relu", "tanh", "sigmoid"))
KAIMING, XAVIER = {"init.name": "kaiming_normal"}, {"init.name": "xavier_normal"}
D14, D30 = {"model.depth": "13"}, {"model.depth": "29"}  # + the head: 14 and 30 weight layers
DEFAULT_SGD = {"optimizer.lr": "0.05", "optimizer.momentum": "0.9"}
CE, MSE, MSE_LOGITS = ({"loss.name": n} for n in ("cross_entropy", "mse", "mse_logits"))

STUDIES = [
    Study("he_init_study", "He et al. 2015: Kaiming vs Xavier in a deep plain ReLU net", [
        Claim("30 layers: Kaiming's init trains, Xavier's stalls (training accuracy, last epoch)",
              "train/acc_epoch", KAIMING, XAVIER, D30,
              paper="Fig. 3: the 30-layer net with Xavier init 'completely stalls', theirs "
                    "converges"),
        Claim("14 layers: the two inits end equal (test accuracy within +-0.01)", "test/acc",
              KAIMING, XAVIER, D14, margin=0.01,
              paper="14-layer model: 33.90% vs 33.82% top-1 error (ImageNet, as issue 21 "
                    "cites it), no difference"),
        Claim("14 layers: Kaiming's init is ahead after epoch 1 (training accuracy)",
              "train/acc_epoch", KAIMING, XAVIER, D14, epoch=1, primary=False,
              paper="Fig. 2 (22 layers): both converge, theirs starts reducing the error "
                    "earlier"),
    ], [Target("30 layers, Xavier: training accuracy stays at chance level (below 0.2) in the "
               "last epoch", "train/acc_epoch", 0.2, {**XAVIER, **D30}, below=True,
               paper="Fig. 3: the error does not go down at all")],
          quick=["model.depth=3,13"]),
    Study("glorot_init_study", "Glorot & Bengio 2010: standard vs normalized init, sigmoid and "
          "tanh", [
        Claim("tanh: the normalized init ends with a higher test accuracy than the standard one",
              "test/acc", {"init.name": "xavier"}, {"init.name": "standard"}, TANH,
              paper="Table 1 (MNIST): test error 1.64% (tanh, normalized) vs 1.76% (standard)"),
        Claim("standard init: tanh ends with a higher test accuracy than sigmoid", "test/acc",
              TANH, SIGMOID, {"init.name": "standard"}, primary=False,
              paper="Table 1 (MNIST): test error 1.76% (tanh) vs 2.21% (sigmoid)"),
    ], [Target("sigmoid, standard init: the top hidden layer saturates at 0 in epoch 1 (its mean "
               "output below 0.1)", "act_mean/net.10", 0.1, {**SIGMOID, "init.name": "standard"},
               epoch=1, below=True,
               paper="Fig. 2: the top hidden layer's mean sigmoid output quickly drops to ~0")]),
    Study("activation_study", "Vanishing gradients: sigmoid vs tanh vs ReLU in a deep MLP", [
        Claim("ReLU's first-layer gradient norm is larger than sigmoid's (epoch 1)",
              "grad_norm/net.1", RELU, SIGMOID, epoch=1,
              paper="sigmoid' <= 1/4: the gradient shrinks layer by layer (Glorot & Bengio "
                    "2010, Sec. 4.2)"),
        Claim("tanh's first-layer gradient norm is larger than sigmoid's (epoch 1)",
              "grad_norm/net.1", TANH, SIGMOID, epoch=1,
              paper="tanh' <= 1 (sigmoid' <= 1/4) near 0"),
        Claim("ReLU trains the 10-layer MLP to a higher test accuracy than sigmoid", "test/acc",
              RELU, SIGMOID, primary=False, paper="Glorot, Bordes & Bengio 2011"),
        Claim("tanh trains the 10-layer MLP to a higher test accuracy than sigmoid", "test/acc",
              TANH, SIGMOID, primary=False, paper="Glorot & Bengio 2010, Table 1"),
    ]),
    Study("dropout_study", "Srivastava et al. 2014: dropout in the over-fitting regime", [
        Claim("dropout 0.5 gives a higher test accuracy (1,000 training images)", "test/acc",
              {"model.dropout": "0.5"}, {"model.dropout": "0.0"},
              paper="Fig. 9: with 1K training examples dropout lowers the test error"),
        Claim("dropout 0.5 gives a lower test loss (1,000 training images)", "test/loss",
              {"model.dropout": "0.5"}, {"model.dropout": "0.0"},
              paper="Sec. 7.4: dropout prevents over-fitting"),
    ], [Target("without dropout the net fits its training set (training accuracy >= 0.99 in the "
               "last epoch): the over-fitting regime", "train/acc_epoch", 0.99,
               {"model.dropout": "0.0"}, primary=False, paper="the regime of Fig. 9")],
          seeds=11),
    Study("optimizer_study", "Kingma & Ba 2015: plain SGD vs Nesterov momentum vs Adam", [
        Claim("Nesterov momentum lowers the training loss after epoch 1 vs plain SGD",
              "train/loss_epoch", {"optimizer.name": "sgd_nesterov"},
              {"optimizer.name": "sgd_plain"}, epoch=1,
              paper="Sutskever et al. 2013: momentum speeds SGD up"),
        Claim("Adam lowers the training loss after epoch 1 vs plain SGD", "train/loss_epoch",
              {"optimizer.name": "adam"}, {"optimizer.name": "sgd_plain"}, epoch=1,
              paper="Fig. 2: Adam's training cost falls fastest"),
        Claim("Adam's training loss is below SGD with Nesterov momentum's after epoch 3",
              "train/loss_epoch", {"optimizer.name": "adam"}, {"optimizer.name": "sgd_nesterov"},
              paper="Fig. 2 (MNIST multilayer net): Adam below SGDNesterov throughout"),
    ]),
    Study("loss_study", "Cross-entropy vs squared error", [
        Claim("cross-entropy learns faster than squared error on softmax outputs (training "
              "accuracy after epoch 1)", "train/acc_epoch", CE, MSE, epoch=1,
              paper="Golik et al. 2013; Glorot & Bengio 2010, Fig. 5: fewer plateaus with "
                    "cross-entropy"),
        Claim("squared error on raw outputs ends on par with cross-entropy (test accuracy within "
              "+-0.01)", "test/acc", CE, MSE_LOGITS, margin=0.01,
              paper="Hui & Belkin 2021: the square loss matches cross-entropy's accuracy"),
        Claim("cross-entropy learns faster than squared error on raw outputs (training accuracy "
              "after epoch 1)", "train/acc_epoch", CE, MSE_LOGITS, epoch=1, primary=False,
              paper="Hui & Belkin 2021 compare final accuracy only"),
    ]),
    Study("init_study", "Symmetry: zero and constant init", [
        Claim("all-zero init cannot break symmetry: worse than Kaiming (LeNet-5, ReLU)",
              "test/acc", KAIMING, {"init.name": "zeros"},
              paper="Goodfellow et al. 2016, Sec. 8.4: units must start different"),
        Claim("a constant init cannot break symmetry: worse than Kaiming (LeNet-5, ReLU)",
              "test/acc", KAIMING, {"init.name": "constant"}, paper="idem"),
    ]),
    Study("loss_regression_study", "Losses for regression with outliers", [
        Claim("SmoothL1 beats MSE on a clean test set after training on outliers", "test/mse",
              {"loss.name": "smooth_l1"}, {"loss.name": "mse"},
              paper="Huber 1964: a loss linear in large errors is robust to outliers"),
        Claim("L1 beats MSE on a clean test set after training on outliers", "test/mse",
              {"loss.name": "l1"}, {"loss.name": "mse"}, paper="idem (the median is robust)"),
    ]),
    Study("lenet5_card", "The card's sweep: LeNet-5, Xavier/Kaiming x sigmoid/ReLU", [
        Claim("ReLU trains LeNet-5 better than sigmoid (Xavier init)", "test/acc", RELU, SIGMOID,
              {"init.name": "xavier"}, paper="Glorot, Bordes & Bengio 2011"),
        Claim("ReLU trains LeNet-5 better than sigmoid (Kaiming init)", "test/acc", RELU, SIGMOID,
              {"init.name": "kaiming"}, paper="Glorot, Bordes & Bengio 2011"),
        Claim("with ReLU, Xavier and Kaiming end equal at 5 layers (test accuracy within +-0.01)",
              "test/acc", {"init.name": "kaiming"}, {"init.name": "xavier"}, RELU, margin=0.01,
              paper="He et al. 2015: the inits differ only in much deeper nets"),
    ], seeds=10),
    Study("lenet5_kaiming_sgd", "Why init=kaiming does worse with the default SGD on LeNet-5", [
        Claim("with the default SGD (lr 0.05, momentum 0.9) PyTorch's default init beats Kaiming",
              "test/acc", {"init.name": "default"}, {"init.name": "kaiming"}, DEFAULT_SGD,
              paper="the card's observation: 0.97 vs 0.92, one run each"),
        Claim("at lr 0.01 (momentum 0.9) Kaiming and the default end equal (within +-0.01)",
              "test/acc", {"init.name": "kaiming"}, {"init.name": "default"},
              {"optimizer.lr": "0.01", "optimizer.momentum": "0.9"}, margin=0.01),
        Claim("without momentum (lr 0.05) Kaiming and the default end equal (within +-0.01)",
              "test/acc", {"init.name": "kaiming"}, {"init.name": "default"},
              {"optimizer.lr": "0.05", "optimizer.momentum": "0.0"}, margin=0.01),
        Claim("Kaiming with momentum 0.9: lr 0.01 beats lr 0.05", "test/acc",
              {"optimizer.lr": "0.01"}, {"optimizer.lr": "0.05"},
              {"init.name": "kaiming", "optimizer.momentum": "0.9"}, primary=False),
    ], quick=["optimizer.lr=0.05", "optimizer.momentum=0.9,0.0"], seeds=3),
]
STUDIES.append(Study("lenet5_mnist", "LeNet-5 on MNIST", [], [
    Target("LeNet-5 reaches 99.0% test accuracy on MNIST", "test/acc", 0.99,
           paper="LeCun et al. 1998: 0.95% test error (LeNet-5)")],
    by_default=False))  # 12 epochs of 60,000 images x 5 seeds: hours on 2 CPU cores
BY_NAME = {s.name: s for s in STUDIES}
DEFAULT_STUDIES = [s.name for s in STUDIES if s.by_default]
