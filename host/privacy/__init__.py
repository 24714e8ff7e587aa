"""Privacy: how much of the input an attacker can rebuild from what crosses the link.

`hostctl privacy audit` runs a learned inversion attack and a white-box attack on a bundle's
front, before and after training, through the real link codecs and the edge's activation noise,
and scores them with PSNR and SSIM against the mean-image baseline. `accounting` turns the
edge's noise options into (epsilon, delta). docs/privacy.md says what is and is not guaranteed.
"""

# delta of the (epsilon, delta) the audit and `hostctl privacy epsilon` report by default.
DEFAULT_DELTA = 1e-5
