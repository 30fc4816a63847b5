"""Builder of the PAR masks' knobs (the ``train_univdm.par`` section)."""

from __future__ import annotations

from pipeline.config import ParParams
from pipeline.par import ParMasks


def par_masks(par: ParParams) -> ParMasks:
    """The mask knobs of ``par`` (Eq. 2-3); ``enabled`` and ``figures`` are not the masks'."""
    return ParMasks(tau=par.tau, radius_at_512=par.radius_at_512, omega1=par.omega1,
                    omega2=par.omega2, sigma_at_512=par.sigma_at_512, aggregate=par.aggregate,
                    floor=par.floor)  # fmt: skip
