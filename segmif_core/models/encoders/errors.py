"""Errors of the encoder registry."""


class PretrainedWeightsError(ValueError):
    """Pretrained encoder weights cannot be found, read, or do not fit the encoder."""


def key_mismatch_message(source: str, missing, unexpected, limit: int = 8) -> str:
    """One message naming the missing and unexpected keys (at most ``limit`` of each)."""
    def show(keys):
        keys = sorted(keys)
        more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more if keys else "none"
    return (f"weights in {source} do not fit the encoder: missing keys: {show(missing)}; "
            f"unexpected keys: {show(unexpected)}")
