"""Task routing: which channels each denoising task (timestep) reads in a routed block.

``masks`` builds the fixed tables (DTR, R-TR, CDTR, ERCDT); ``spec`` holds ``RoutingSpec``,
the plain-data description a run config carries.  The learned kinds (Switch-DiT, learned
window) are modules of the model: trainers/models/switch_routing.py, learned_window.py.
"""
