# opusbatch exports only the Python-level encode_batch (see opusbatch.pyx); nothing to cimport.
