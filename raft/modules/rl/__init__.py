"""PPO baseline pieces (Schulman et al. 2017; Ziegler et al. 2019): pure tensor functions, no models."""
