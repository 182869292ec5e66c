"""Publishing a saved folder to the Hugging Face Hub, exactly as it is on disk.

transformers' own ``push_to_hub`` names the repository after the folder it saves into and
replaces README.md with a card of its own; userfm saves into a temporary folder first (so a
kill never leaves half a model) and writes its vocabularies and filled card after the
weights, so the upload must come last and send the finished folder: `upload_to_hub`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: the keyword arguments `upload_to_hub` takes (accepted by `UserEncoder.save_pretrained`
#: together with ``push_to_hub=True``)
HUB_OPTIONS = ("token", "private", "revision", "create_pr", "commit_message", "commit_description")


def upload_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | bool | None = None,
    private: bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    commit_description: str | None = None,
) -> Any:
    """Create the model repository ``repo_id`` if needed and upload every file of ``folder``.

    Args:
        folder: a folder written by ``save_pretrained`` (config, weights, vocab.json, card).
        repo_id: ``"name"`` (in the token's namespace) or ``"owner/name"``.
        token, private, revision, create_pr, commit_message, commit_description: as in
            `huggingface_hub.HfApi.upload_folder` (``private`` only applies to a new repo).

    Returns:
        huggingface_hub's ``CommitInfo`` of the upload.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(
        repo_id=repo,
        folder_path=str(folder),
        commit_message=commit_message or f"Upload {Path(folder).name} with userfm",
        commit_description=commit_description,
        revision=revision,
        create_pr=create_pr,
    )
