"""Aesthetic scores with the improved-aesthetic-predictor inference code and the OpenAI ``clip``
package, for the parity test.

Run as ``python aesthetic_clip.py job.json out.json`` with ``clip`` (PyPI ``openai-clip``) on
``PYTHONPATH``. job: ``{"clip_model", "weights", "images": [...]}``. The steps are those of
``simple_inference.py`` (github.com/christophschuhmann/improved-aesthetic-predictor): the MLP,
``clip.load(<checkpoint>, device)``, ``preprocess(Image.open(path))``, ``encode_image``, numpy
``normalized``, the MLP on the float32 embedding. Writes ``{"scores": [float]}``.
"""

import json
import sys
from pathlib import Path

import clip
import numpy as np
import torch
from PIL import Image
from torch import nn


class MLP(nn.Module):  # simple_inference.py's MLP (a LightningModule there; the same layers)
    def __init__(self, input_size):
        super().__init__()
        self.input_size = input_size
        self.layers = nn.Sequential(
            nn.Linear(self.input_size, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, x):
        return self.layers(x)


def normalized(a, axis=-1, order=2):
    l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
    l2[l2 == 0] = 1
    return a / np.expand_dims(l2, axis)


job = json.loads(Path(sys.argv[1]).read_text())
device = "cuda" if torch.cuda.is_available() else "cpu"
model = MLP(768)
model.load_state_dict(torch.load(job["weights"], map_location="cpu"))  # the real file holds CUDA tensors
model.to(device)
model.eval()
model2, preprocess = clip.load(job["clip_model"], device=device)
scores = []
for img_path in job["images"]:
    pil_image = Image.open(img_path)
    image = preprocess(pil_image).unsqueeze(0).to(device)
    with torch.no_grad():
        image_features = model2.encode_image(image)
    im_emb_arr = normalized(image_features.cpu().detach().numpy())
    with torch.no_grad():
        prediction = model(torch.from_numpy(im_emb_arr).to(device).type(torch.float32))
    scores.append(float(prediction.item()))
Path(sys.argv[2]).write_text(json.dumps({"scores": scores}))
