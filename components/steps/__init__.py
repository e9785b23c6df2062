"""The work of each pipeline step as plain functions (no KFP decorators).

Component bodies import these at run time, where `kfp.dsl` is the runtime-only subset
(no `dsl.component`), so nothing here may import the component modules.
"""
