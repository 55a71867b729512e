"""Raw interactions -> the authors' leave-one-out files (``bin/prepare_data``).

* :mod:`~ncf_tf.data.prepare.readers`: one reader per input format (MovieLens
  ``ratings.dat``, MovieLens-20M/25M ``ratings.csv``, any CSV/TSV with or
  without a header), each reading a chunk at a time into integer arrays;
* :mod:`~ncf_tf.data.prepare.pipeline`: the paper's protocol on those arrays,
  every step and the tie rule documented there, and the writing;
* :mod:`~ncf_tf.data.prepare.negatives`: the exact, vectorised test-negative
  draw, and re-drawing the negatives of existing files (``ml-1m-neg999``);
* :mod:`~ncf_tf.data.prepare.common`: the error, the output files and their
  all-or-nothing writing, fast text for integer tables.
"""

from ncf_tf.data.prepare.common import (OUTPUT_SUFFIXES, PROTOCOLS, PrepareError,
                                        check_outputs, output_paths)
from ncf_tf.data.prepare.negatives import (NEGATIVE_SUFFIXES, resample_negatives,
                                           sample_test_negatives)
from ncf_tf.data.prepare.pipeline import (TIE_BREAKS, PrepareStats, Split, TieBreak, prepare,
                                          split, write_split)
from ncf_tf.data.prepare.readers import (FORMATS, Interactions, read_interactions,
                                         suggest_format)
