"""Raw interactions -> the authors' leave-one-out files (``bin/prepare_data``): one
reader per input format (:mod:`~ncf_tf.data.prepare.readers`) feeding one
array-based pipeline (:mod:`~ncf_tf.data.prepare.pipeline`), the test-negative
draw (:mod:`~ncf_tf.data.prepare.negatives`) and the writing
(:mod:`~ncf_tf.data.prepare.common`).
"""

from ncf_tf.data.prepare.common import (OUTPUT_SUFFIXES, PROTOCOLS, PrepareError,
                                        check_outputs, output_paths)
from ncf_tf.data.prepare.negatives import (NEGATIVE_SUFFIXES, resample_negatives,
                                           sample_test_negatives)
from ncf_tf.data.prepare.pipeline import (TIE_BREAKS, PrepareStats, Split, TieBreak, prepare,
                                          split, write_split)
from ncf_tf.data.prepare.readers import (FORMATS, Interactions, read_interactions,
                                         suggest_format)
