"""Synthetic lesions: generated 2D grey images with a planted subgroup gap; needs no download.

Each image is a textured background of overlapping discs (``monai.data.synthetic.create_test_image_2d``)
plus scanner noise. Label 1 means one small bright disc (the "lesion") was added. The sensitive
attribute ``site`` has two scanners: site ``B`` is noisier and sees more positives than site ``A``, so a
model should score lower AUROC on site B. The gap's direction is known by construction, which makes it
a check on the whole pipeline's fairness measurements.

Sites: ``n_sites`` (default 2, the original generator exactly) names the sites ``A``, ``B``, ``C``, ...; with more
than two, each site holds an equal share of the images and every second site (``B``, ``D``, ...) has site B's
noisy scanner and prevalence, the others site A's. ``site`` is the card's ``site_attribute``: the federated
methods partition the training rows by it, one hospital per Flower client.

Patients: images come from patients with 1 to ``images_per_patient`` images each (uniformly), ids in
``patient_id``. A patient has one site, and a patient-level effect makes their images alike: a brightness
gain of the whole image (scanner calibration and anatomy, N(1, 0.15) clipped to [0.6, 1.4]) and a lesion
size (maximum radius 3, 4 or 5 pixels). Labels are drawn per image with the site's prevalence. With
``images_per_patient: 1`` the generator is the original one image per person (no patient ids), kept so
earlier results can be reproduced exactly.

Deterministic given ``seed``; ``n_samples`` (images), ``image_size`` and ``images_per_patient`` are parameters.
"""

import numpy as np
import pandas as pd
from dpfair.data import DatasetCard, RawDataset, register_dataset
from monai.data.synthetic import create_test_image_2d

CARD = DatasetCard(
    name="synthetic_lesions",
    modality="image",
    task="binary classification: is a small bright lesion present in a 2D grey image",
    outcome="1 if a lesion disc was planted in the image (by construction; no clinical meaning)",
    sensitive_attributes=("site",),
    site_attribute="site",
    license="generated data, CC0-1.0",
    citation="Generated with MONAI (Cardoso MJ et al., MONAI: An open-source framework for deep learning in healthcare, arXiv:2211.02701)",
    homepage="https://docs.monai.io/en/stable/data.html#synthetic",
    source="generated at preparation time by monai.data.synthetic.create_test_image_2d",
    notes="site B: noise std 0.30 vs 0.10 at site A, prevalence 0.5 vs 0.3, 40% of images; 1-3 images per patient "
    "by default, with a per-patient brightness gain and lesion size",
)

#: Per site: share of images, prevalence, scanner noise standard deviation.
SITES = {"A": (0.6, 0.3, 0.10), "B": (0.4, 0.5, 0.30)}


def sites(n_sites: int) -> dict[str, tuple[float, float, float]]:
    """The sites of a generator with ``n_sites`` scanners: :data:`SITES` for two, else equal shares alternating A's and B's scanner."""
    if isinstance(n_sites, bool) or not isinstance(n_sites, int) or not 2 <= n_sites <= 26:
        raise ValueError(f"n_sites must be a whole number from 2 to 26, got {n_sites!r}")
    if n_sites == 2:
        return dict(SITES)
    names = [chr(ord("A") + i) for i in range(n_sites)]
    return {name: (1.0 / n_sites, *SITES["AB"[i % 2]][1:]) for i, name in enumerate(names)}


@register_dataset(CARD)
def load(
    *,
    n_samples: int = 2000,
    image_size: int = 32,
    seed: int = 0,
    lesion_contrast: float = 0.5,
    images_per_patient: int = 3,
    n_sites: int = 2,
) -> RawDataset:
    if image_size < 16:
        raise ValueError(f"image_size must be at least 16, got {image_size}")
    if images_per_patient < 1:
        raise ValueError(f"images_per_patient must be at least 1, got {images_per_patient}")
    site_table = sites(n_sites)
    if images_per_patient > 1:
        return _with_patients(
            n_samples=n_samples,
            image_size=image_size,
            seed=seed,
            lesion_contrast=lesion_contrast,
            images_per_patient=images_per_patient,
            site_table=site_table,
        )
    rng = np.random.RandomState(seed)
    names = list(site_table)
    site = rng.choice(names, size=n_samples, p=[site_table[s][0] for s in names])
    prevalence = np.array([site_table[s][1] for s in site])
    noise = np.array([site_table[s][2] for s in site])
    labels = (rng.uniform(size=n_samples) < prevalence).astype(np.int64)
    images = np.empty((n_samples, 1, image_size, image_size), dtype=np.float32)
    for i in range(n_samples):
        background, _ = create_test_image_2d(
            image_size,
            image_size,
            num_objs=8,
            rad_max=image_size // 4,
            rad_min=2,
            num_seg_classes=1,
            random_state=rng,
        )
        image = 0.5 * background
        if labels[i]:
            _, mask = create_test_image_2d(
                image_size, image_size, num_objs=1, rad_max=4, rad_min=2, num_seg_classes=1, random_state=rng
            )
            image = image + lesion_contrast * mask
        images[i, 0] = image + rng.normal(0.0, noise[i], size=image.shape)
    return RawDataset(inputs=images, labels=labels, attributes=pd.DataFrame({"site": site}))


def _with_patients(
    *, n_samples: int, image_size: int, seed: int, lesion_contrast: float, images_per_patient: int, site_table: dict
) -> RawDataset:
    rng = np.random.RandomState(seed)
    sizes = []
    while sum(sizes) < n_samples:
        sizes.append(int(rng.randint(1, images_per_patient + 1)))
    sizes[-1] -= sum(sizes) - n_samples
    n_patients = len(sizes)
    names = list(site_table)
    patient_site = rng.choice(names, size=n_patients, p=[site_table[s][0] for s in names])
    gain = np.clip(rng.normal(1.0, 0.15, size=n_patients), 0.6, 1.4)
    lesion_radius = rng.randint(3, 6, size=n_patients)
    patient = np.repeat(np.arange(n_patients), sizes)
    site = patient_site[patient]
    prevalence = np.array([site_table[s][1] for s in site])
    noise = np.array([site_table[s][2] for s in site])
    labels = (rng.uniform(size=n_samples) < prevalence).astype(np.int64)
    images = np.empty((n_samples, 1, image_size, image_size), dtype=np.float32)
    for i in range(n_samples):
        p = patient[i]
        background, _ = create_test_image_2d(
            image_size,
            image_size,
            num_objs=8,
            rad_max=image_size // 4,
            rad_min=2,
            num_seg_classes=1,
            random_state=rng,
        )
        image = 0.5 * background
        if labels[i]:
            _, mask = create_test_image_2d(
                image_size,
                image_size,
                num_objs=1,
                rad_max=int(lesion_radius[p]),
                rad_min=2,
                num_seg_classes=1,
                random_state=rng,
            )
            image = image + lesion_contrast * mask
        images[i, 0] = gain[p] * image + rng.normal(0.0, noise[i], size=image.shape)
    return RawDataset(
        inputs=images,
        labels=labels,
        attributes=pd.DataFrame({"site": site}),
        patient_id=np.array([f"P{p:05d}" for p in patient]),
    )
