"""The operations console (issue 21): a web page to watch pipelines and resolve conflicts.

``syncengine ui CONFIG`` serves it alone, ``syncengine run CONFIG --ui-port N`` from the
daemon. It reads the state store and acts only through the code the CLI runs (resolving a
conflict, replaying dead letters, verify), so a click does exactly what the command does.

Importing this package loads nothing heavy: aiohttp and Jinja2 load when a server starts
(:mod:`syncengine.console.server`), so ``import syncengine`` and the CLI stay fast.
"""
