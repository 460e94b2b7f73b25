# A small MAnet at full resolution for the CPU: the small UNet++ config's randomly initialised
# efficientnet_b0 encoder, decoder channels, data and schedule, under MAnetHead (with smp's
# 64 attention channels and reduction 16; benchmarks/bench_manet.py compares the two).
_base_ = ['./unetpp_tiny_cpu_handbone.py']
model = dict(decode_head=dict(type='MAnetHead'))
