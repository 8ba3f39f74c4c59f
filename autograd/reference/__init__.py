"""The reference kernels: every fused op of a GPT, forward and backward in plain NumPy.

This is what a learner reads and steps into from `loss.backward()` (run with
`autograd.set_kernels("reference")`, `with autograd.kernels("reference"):` or
`MINIGPT_KERNELS=reference`): one file per layer or small family, each a `Function` whose
`backward` sits a few lines below its `forward` and names, line by line, the forward line it
reverses. No closures, no threads, no buffers reused across calls; the gradient is computed in
`backward`. `autograd/fast/` holds the same ops made fast; tests/test_kernels.py checks that both
agree, and `autograd/kernels.py` switches between them.

Reading order, the book's (chapters 2-5, then appendix A and chapter 7):

    embedding.py       Embedding                      token and position lookup (ch. 2.7-2.8)
    linear.py          Linear                         y = x W^T + b (ch. 3.4)
    softmax.py         Softmax, LogSoftmax            attention weights, log-probabilities (ch. 3.3)
    dropout.py         Dropout, dropout_keep_mask     inverted dropout (ch. 3.5.2)
    attention.py       ScaledDotProductAttention      causal attention, fused (ch. 3.4-3.6)
    layer_norm.py      LayerNorm                      (ch. 4.2)
    gelu.py            Gelu                           the feed-forward activation (ch. 4.3)
    cross_entropy.py   CrossEntropy                   the training loss (ch. 5.1.2)
    sigmoid.py         Sigmoid, LogSigmoid            logistic regression (app. A.3), DPO (ch. 7)
    losses.py          BinaryCrossEntropy, BinaryCrossEntropyWithLogits, MSELoss (app. A, ch. 4.4)
    rms_norm.py        RMSNorm                        Llama's and Qwen3's norm (ch. 5 bonus)
    silu.py            Silu                           the SwiGLU feed-forward's activation (ch. 5 bonus)
    rope.py            Rope                           rotary position embeddings (ch. 5 bonus)

Nothing is imported here: import the module you need (`from autograd.reference.softmax import
Softmax`), or ask `autograd.kernels.get("Softmax")` for the active set's class.
"""
