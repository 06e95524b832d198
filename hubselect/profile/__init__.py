"""Stage 2, dataset profiles: image sources (Hub, folder), probes, profiles and the Fréchet distance."""
