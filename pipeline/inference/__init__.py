"""Sampling (DDIM, long videos), guidance (Algorithm 1, Eq. 8-12), animator, the infer stage's
test-clip generation, PCE negatives."""
