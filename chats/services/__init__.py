"""Writes of chats, and the path of one message.

- `chats.services.chats` — chats and system prompts (create, update, archive, delete);
- `chats.services.messages` — `message_start` / `message_send`: the one path every entry point
  takes to send a message, up to the provider call;
- `chats.services.generation` — `Generation`: the provider stream, its fan-out, settlement;
- `chats.services.records` — the two database writes of an answer (start and end);
- `chats.services.inputs` — validation of a message's input, shared by REST and WebSocket;
- `chats.services.context` — the context sent to the model, and chat titles;
- `chats.services.presence` — the per-chat lock and watcher count, in the database;
- `chats.services.errors` — the errors, all `ApiError`s.

Import from the submodules (`from chats.services.messages import message_start`): this package
re-exports nothing, so that `chats.selectors` can raise `chats.services.errors` without an
import cycle.
"""
