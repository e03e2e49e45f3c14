# The peer of bench/host_bench.ts: one LoRA training step (forward + backward + AdamW) of a Llama-shaped model
# with random weights in PyTorch on the CPU, PEFT when importable. Prints "ms <median of 3 after one warm-up>".
# Arguments: layers hidden heads kv_heads intermediate vocab batch seq_len rank.
import sys
import time

try:
    import torch
except ImportError:
    sys.exit("torch is not importable")

layers, hidden, heads, kv_heads, inter, vocab, batch, seq, rank = map(int, sys.argv[1:10])
torch.manual_seed(0)
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

config = LlamaConfig(
    vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
    num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=max(256, seq),
)
model = LlamaForCausalLM(config)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
try:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, lora_dropout=0.0))
except ImportError:
    print("peft is not importable: LoRA through a plain wrapper", file=sys.stderr)

    class Lora(torch.nn.Module):
        def __init__(self, base, rank):
            super().__init__()
            self.base = base
            self.a = torch.nn.Linear(base.in_features, rank, bias=False)
            self.b = torch.nn.Linear(rank, base.out_features, bias=False)
            torch.nn.init.zeros_(self.b.weight)

        def forward(self, x):
            return self.base(x) + 2.0 * self.b(self.a(x))

    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers:
        for name in targets:
            parent = layer.self_attn if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else layer.mlp
            setattr(parent, name, Lora(getattr(parent, name), rank))
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=1e-3)
ids = torch.randint(0, vocab, (batch, seq))
times = []
for i in range(4):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    times.append((time.perf_counter() - t0) * 1e3)
print("ms", sorted(times[1:])[1])
