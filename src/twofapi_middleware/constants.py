"""Wire constants of the 2FApi protocol (PROTOCOL.md), in one place.

Every size is in bytes and every duration in seconds; the unit is in the name.
Domain-separation tags appear nowhere else in the package.
"""

from __future__ import annotations

import re
from typing import Final

PROTOCOL_VERSION: Final = "1.0"
SUPPORTED_VERSIONS: Final = ("1.0",)
SERVICE_VERSION: Final = "1.0"

# Group and encodings (sections 1 and 2).
GROUP_ORDER: Final = 2**252 + 27742317777372353535851937790883648493
POINT_BYTES: Final = 32
SCALAR_BYTES: Final = 32
PROOF_BYTES: Final = 96
IDENTITY_POINT: Final = bytes(32)
BASEPOINT_G: Final = bytes.fromhex(
    "e2f2ae0a6abc4e71a884a961c500515f58e30b6aa582dd8db6a65945e08d2d76"
)
GENERATOR_H: Final = bytes.fromhex(
    "108d531fa5f818c6ca355d785fd7da880552914e1b550bd0c3846f3e5518142f"
)

# Domain-separation tags (sections 2 and 4).
GENERATOR_H_SEED: Final = b"2FApi-Pedersen-GeneratorH-v1"
TRANSCRIPT_HASH_PREFIX: Final = b"2FApi-Sigma-Transcript-v1"
AUTH_TAG: Final = "2FApi-v1.0-Sigma"
POP_TAG: Final = b"2FApi-PoP-v1"
ROTATION_CURRENT_TAG: Final = b"2FApi-Rotation-Current-v1"
ROTATION_NEW_TAG: Final = b"2FApi-Rotation-New-v1"
REACTIVATION_TAG: Final = b"2FApi-Reactivation-v1"

# Identifiers and fields (sections 1 and 6).
CLIENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")
CHALLENGE_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
REQUEST_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
TAG_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")
CHALLENGE_ID_BYTES: Final = 16
NONCE_RANDOM_BYTES: Final = 16
NONCE_BYTES: Final = 24
CHANNEL_BINDING_SIZES: Final = (32, 48)
CREDENTIAL_MIN_BYTES: Final = 1
CREDENTIAL_MAX_BYTES: Final = 1024
RECOVERY_WORD_COUNTS: Final = (12, 18, 24)
RECOVERY_WORDS_ISSUED: Final = 12
REFERENCE_ID_BYTES: Final = 16

# Lifetimes (sections 6 and 7).
CHALLENGE_TTL_SECONDS: Final = 120
TOKEN_TTL_SECONDS: Final = 900
TOKEN_LEEWAY_SECONDS: Final = 10
TOKEN_LEEWAY_MAX_SECONDS: Final = 60
JTI_BYTES: Final = 16

# HTTP limits (section 5).
MAX_BODY_BYTES: Final = 64 * 1024
MAX_JSON_DEPTH: Final = 32
ADMIN_SECRET_MIN_CHARS: Final = 32

# Lockout and rate limits (section 8).
LOCKOUT_THRESHOLD: Final = 3
LOCKOUT_FIRST_SECONDS: Final = 60 * 60
LOCKOUT_MAX_SECONDS: Final = 24 * 60 * 60
LOCKOUTS_BEFORE_SUSPENSION: Final = 3
RECOVERY_FAILURES_BEFORE_DISABLE: Final = 3
RATE_LIMIT_WINDOW_SECONDS: Final = 60
RATE_LIMIT_PER_ADDRESS: Final = 60
RATE_LIMIT_PER_CLIENT: Final = 10

# Argon2id (issue 4: no weaker than m=19 MiB, t=2, p=1).
ARGON2_MEMORY_KIB: Final = 19 * 1024
ARGON2_TIME_COST: Final = 2
ARGON2_PARALLELISM: Final = 1
ARGON2_MAX_CONCURRENCY: Final = 2
ARGON2_QUEUE_LENGTH: Final = 8

# Storage failures (section 9).
STORAGE_RETRY_AFTER_SECONDS: Final = 5
