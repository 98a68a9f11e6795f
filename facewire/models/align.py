"""Face alignment: a similarity transform of 5 landmarks onto the 112x112 ArcFace/SFace template.

The warp interpolates bicubically (``WARP``). A camera's face of 23-37 px is enlarged 3-5 times onto the
template, where bilinear interpolation blurs what little detail there is. Measured on lfw-dev
(``python -m bench.warp_cost``; docs/accuracy.md, "Warp interpolation"): at ~23 px with one enrolment
photo, 81.0 % of known probes named at the default threshold against 77.8 % bilinear, no stranger named
with either; full-size photos unchanged. Lanczos gains about as much at three times bicubic's cost
(0.65 against 0.20 ms a face here, 1 % of embedding it).
"""

from __future__ import annotations

import cv2
import numpy as np

# Eye centres, nose tip and mouth corners of a 112x112 aligned face (ArcFace, as SFace expects).
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)
WARP = cv2.INTER_CUBIC
WARP_NAME = "cubic"  # part of FaceAnalyzer.preparation: embeddings cached under another warp are not reused


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``source`` onto ``target`` (Umeyama 1991)."""
    src_mean, dst_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - src_mean, target - dst_mean
    src_var = (src**2).sum() / len(src)
    if src_var < 1e-9:
        raise ValueError("landmarks are degenerate")
    u, singular, vt = np.linalg.svd(dst.T @ src / len(src))
    sign = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign)) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]]).astype(np.float32)


def align_face(frame: np.ndarray, landmarks: np.ndarray, size: int = 112, interpolation: int = WARP) -> np.ndarray:
    """Warp the face with these 5 landmarks onto the template, giving a ``size`` x ``size`` BGR crop
    (``interpolation``: an OpenCV flag; other than ``WARP`` only to measure the choice, bench.warp_cost)."""
    matrix = similarity_transform(landmarks.astype(np.float64), TEMPLATE_112.astype(np.float64) * (size / 112.0))
    return cv2.warpAffine(frame, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_CONSTANT)


def crop_face(frame: np.ndarray, bbox: tuple[float, float, float, float], size: int, margin: float = 0.1) -> np.ndarray:
    """Fallback for detectors without landmarks: a square crop around the box, ``margin`` added per side."""
    x, y, w, h = bbox
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    matrix = np.array(
        [[size / side, 0, size / 2 - cx * size / side], [0, size / side, size / 2 - cy * size / side]], dtype=np.float32
    )
    return cv2.warpAffine(frame, matrix, (size, size), flags=WARP, borderMode=cv2.BORDER_CONSTANT)
