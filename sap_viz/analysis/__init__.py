"""Analysis of a trained polytope: detection metrics, facet statistics, attribution, the feature map, the audit report."""
