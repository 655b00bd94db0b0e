"""``agora chat``: the terminal client, on Textual.

- ``options``: the command line (argparse only, so ``agora serve`` loads no TUI library);
- ``main``: log in, connect, run the app;
- ``config``: remembered tokens under ``$XDG_CONFIG_HOME/agora``;
- ``state``: channels, transcripts and unread counts, without UI;
- ``commands``: the slash-command table;
- ``app``, ``widgets``: the Textual application.
"""
