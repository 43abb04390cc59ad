"""polydiff.domains: built-in data domains, each registered as a plugin exactly like a third-party one."""
