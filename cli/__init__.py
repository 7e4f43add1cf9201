"""The `meshid` command line. It lives above the flows it starts: the library (`meshid/`) never imports it, nor
`flows` or `tasks`. The flow-starting commands import the flows lazily, so `meshid --help` and the commands that start
no flow never import Prefect.

Exit codes (`cli.exits`): 0 success, 1 a stage or operation failed, 2 bad input (the message names the field and the
fix); a run or fleet stopped by SIGINT or SIGTERM exits 130 or 143 once it has cleaned up (`meshid.interrupt`).
"""
