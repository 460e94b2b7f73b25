from .handbone import HandBoneDataset, patient_folds
from .roi import CropToClasses, LoadFrameAnnotations
from .transforms import LoadMultiLabelAnnotations, LoadXrayFromFile, RandomElasticDeform

__all__ = ['HandBoneDataset', 'patient_folds', 'LoadMultiLabelAnnotations',
           'LoadXrayFromFile', 'RandomElasticDeform', 'CropToClasses', 'LoadFrameAnnotations']
