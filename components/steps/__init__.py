"""The work of each pipeline step as plain functions (no KFP decorators).

Component bodies import these at run time, where `kfp.dsl` is the runtime-only subset
(no `dsl.component`), so nothing here may import the component modules.
"""

from imfuse._quiet import import_tensorflow_quietly

# Every step body imports this package first: keep TensorFlow's native start-up lines
# out of the step logs (the KFP UI and `imfuse pipeline run --local` show them).
import_tensorflow_quietly()
