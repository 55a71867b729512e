"""Raw interactions -> the authors' leave-one-out files (``bin/prepare_data``).

One module per way in:

* :mod:`~ncf_tf.data.prepare.core`: MovieLens's ``ratings.dat`` or any
  CSV/TSV with a header, read whole into a table of strings (any id, any
  separator); the paper's protocol, every step and the tie rule documented
  there.
* :mod:`~ncf_tf.data.prepare.movielens_csv`: MovieLens-20M/25M's
  ``ratings.csv`` (tens of millions of lines), read in chunks into integer
  arrays, with the same steps done in numpy; the MLPerf protocol as a preset.
* :mod:`~ncf_tf.data.prepare.negatives`: the exact, vectorised test-negative
  draw both use, and re-drawing the negatives of existing files
  (``ml-1m-neg999``).
* :mod:`~ncf_tf.data.prepare.common`: the error, the output files and their
  all-or-nothing writing, fast text for integer tables.
"""

from ncf_tf.data.prepare.common import (OUTPUT_SUFFIXES, PROTOCOLS, PrepareError,
                                        check_outputs, output_paths, write_staged)
from ncf_tf.data.prepare.core import (FORMATS, MOVIELENS_FIELDS, TIE_BREAKS, LeaveOneOut,
                                      PrepareStats, RawInteractions, TieBreak, leave_one_out,
                                      prepare, read_interactions, read_movielens, read_table,
                                      write_leave_one_out)
from ncf_tf.data.prepare.negatives import (NEGATIVE_SUFFIXES, resample_negatives,
                                           sample_test_negatives)
from ncf_tf.data.prepare.movielens_csv import FORMAT as MOVIELENS_CSV
from ncf_tf.data.prepare.movielens_csv import (Ratings, Split, prepare_movielens_csv,
                                               read_ratings_csv)

INPUT_FORMATS = (*FORMATS, MOVIELENS_CSV)   # bin/prepare_data --format
