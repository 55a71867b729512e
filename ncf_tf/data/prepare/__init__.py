"""Raw interactions -> the authors' leave-one-out files (``bin/prepare_data``): the
readers, the pipeline, the test-negative draw and the writing (``common``)."""

from ncf_tf.data.prepare.common import (OUTPUT_SUFFIXES, PROTOCOLS, PrepareError,
                                        check_outputs, output_paths)
from ncf_tf.data.prepare.negatives import (NEGATIVE_SUFFIXES, resample_negatives,
                                           sample_test_negatives)
from ncf_tf.data.prepare.pipeline import (TIE_BREAKS, PrepareStats, Split, TieBreak, prepare,
                                          split, write_split)
from ncf_tf.data.prepare.readers import (FORMATS, Interactions, read_interactions,
                                         suggest_format)
