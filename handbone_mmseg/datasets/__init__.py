from .handbone import HandBoneDataset, patient_folds
from .transforms import LoadMultiLabelAnnotations, LoadXrayFromFile, RandomElasticDeform

__all__ = ['HandBoneDataset', 'patient_folds', 'LoadMultiLabelAnnotations',
           'LoadXrayFromFile', 'RandomElasticDeform']
