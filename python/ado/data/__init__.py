"""WebDataset mixture loading: manifests, the online-weighted ``MixtureLoader`` and LM packing.

Example::

    from ado.data import LoaderConfig, MixtureLoader, PackConfig

    loader = MixtureLoader({"web": "web/shard-{000..015}.tar", "code": "code/*.tar"},
                           batch_size=32, seed=0, weights=[0.7, 0.3])
    # the same: every option in one frozen, validated, serialisable object
    config = LoaderConfig(batch_size=32, seed=0)
    loader = config.build({"web": "web/shard-{000..015}.tar", "code": "code/*.tar"},
                          weights=[0.7, 0.3])
    for batch in loader:
        ...                        # batch.domain, batch.keys, batch.samples
        loader.set_weights(new_w)  # used by the very next batch
"""

from __future__ import annotations

from ado.data.config import LoaderConfig, PackConfig, default_cache_dir
from ado.data.loader import Batch, MixtureLoader
from ado.data.manifest import DomainSpec, Manifest, expand_patterns, expand_sources
from ado.data.remote import RemoteConfig
from ado.data.shards import index_shard

__all__ = [
    "Batch",
    "DomainSpec",
    "LoaderConfig",
    "Manifest",
    "MixtureLoader",
    "PackConfig",
    "RemoteConfig",
    "default_cache_dir",
    "expand_patterns",
    "expand_sources",
    "index_shard",
]
