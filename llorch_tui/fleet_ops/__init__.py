"""Fleet-wide operations run from the control plane: placement, pool-to-pool copies, installs."""
